"""Where handlers run: ``threads`` (default), ``processes``, ``solo``, ``asyncio``.

Every pool takes ``Dispatch`` records from the fetcher, runs them, and reports each
exactly once through ``on_done(dispatch, outcome)``. A dispatch's state changes under
the pool's lock, which is what makes "exactly once" hold when a timeout races the
handler's own return.

Timeouts
  * threads / solo: Python cannot kill a thread. At the deadline the job is failed
    (``JobTimeout``, so the retry policy applies) and the thread is *abandoned*: a
    ``JobTimeout`` is raised inside it asynchronously (which stops pure-Python code at
    its next bytecode; code blocked inside a C call notices only when the call
    returns), its eventual result is discarded, and it exits instead of taking more
    work. The threads pool starts a replacement thread at once, so capacity stays.
  * processes: the child running the job is killed (SIGKILL) and replaced.
  * asyncio: the coroutine is cancelled (``asyncio.wait_for``).

Cancellation (``JobHandle.cancel()`` of a running job; the worker learns of it from
its promoter, every 0.25 s) uses the same machinery: ``Pool.cancel`` reports the job
as cancelled at once and raises ``JobCancelled`` in its thread (threads, solo),
kills and later replaces its child (processes) or cancels its task (asyncio: the
coroutine sees ``CancelledError``; a plain ``def`` handler's executor thread runs on).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any

from gridq.errors import JobTimeout
from gridq.jobs import JobCancelled
from gridq.worker.results import (
    ERROR,
    BeforeJob,
    Dispatch,
    Outcome,
    call_args,
    cancelled,
    failed,
    prepare,
    run_job,
    succeeded,
    task_label,
    timed_out,
    timeout_of,
)
from gridq.worker.threads import raise_in_thread

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from gridq.worker.app import App

log = logging.getLogger("gridq.worker")

OnDone = Callable[[Dispatch, Outcome], None]


class Pool:
    name = "base"
    # The middleware's before_job, run just before each handler; None (no middleware
    # overrides it) keeps the hot path free of it.
    before: BeforeJob | None = None
    # Whether the thread that reports a job through on_done may block on Redis for a
    # while (the worker may settle the job there; worker.py _settle_here).
    may_block = True

    def __init__(self, app: App, concurrency: int, want_result: bool, on_done: OnDone) -> None:
        self.app = app
        self.concurrency = concurrency
        self.want_result = want_result
        self.on_done = on_done
        self._lock = threading.Lock()
        self._running: dict[int, Dispatch] = {}
        self._closed = False

    def start(self) -> None:
        raise NotImplementedError

    def submit(self, d: Dispatch) -> None:
        raise NotImplementedError

    def drain_unstarted(self) -> list[Dispatch]:
        """Take back dispatches no handler has started (in submission order)."""
        return []

    def running(self) -> list[Dispatch]:
        with self._lock:
            return list(self._running.values())

    def abandon_running(self) -> list[Dispatch]:
        """Forced stop: give up on running jobs; their outcomes will never be reported."""
        with self._lock:
            out = list(self._running.values())
            for d in out:
                d.state = Dispatch.ABANDONED
            self._running.clear()
            return out

    def close(self) -> None:
        self._closed = True

    def cancel(self, d: Dispatch) -> bool:
        """Stop a running job and report it cancelled; False if it is not running."""
        with self._lock:
            if d.state != Dispatch.RUNNING:
                return False
            d.state = Dispatch.ABANDONED
            self._running.pop(id(d), None)
            interrupt = d.interrupt
            if interrupt is None:
                raise_in_thread(getattr(d.thread, "ident", None), JobCancelled)
        if interrupt is not None:
            interrupt()
        self._replace()
        self.on_done(d, cancelled(d.job, d.started))
        return True

    def _replace(self) -> None:
        """A cancelled job's thread is gone: pools that need one start another."""

    # Shared by the pools: claim a dispatch for running / report it once.
    def _begin(self, d: Dispatch) -> bool:
        with self._lock:
            if d.state != Dispatch.QUEUED:
                return False
            d.state = Dispatch.RUNNING
            d.thread = threading.current_thread()
            d.started = time.perf_counter()
            self._running[id(d)] = d
            return True

    def _end(self, d: Dispatch, out: Outcome) -> bool:
        with self._lock:
            if d.state != Dispatch.RUNNING:
                return False  # abandoned: someone else reported it
            d.state = Dispatch.DONE
            self._running.pop(id(d), None)
        self.on_done(d, out)
        return True


class ThreadPool(Pool):
    """N threads taking from one queue; a watchdog enforces timeouts."""

    name = "threads"
    replace_on_timeout = True

    def __init__(self, app: App, concurrency: int, want_result: bool, on_done: OnDone) -> None:
        super().__init__(app, concurrency, want_result, on_done)
        self._q: SimpleQueue[Dispatch | None] = SimpleQueue()
        self._seq = 0
        self._watchdog = threading.Thread(target=self._watch, name="gridq-watchdog", daemon=True)

    def start(self) -> None:
        for _ in range(self.concurrency):
            self._spawn()
        self._watchdog.start()

    def _spawn(self) -> None:
        self._seq += 1
        t = threading.Thread(target=self._loop, name=f"gridq-job-{self._seq}", daemon=True)
        t.start()

    def submit(self, d: Dispatch) -> None:
        self._q.put(d)

    def _loop(self) -> None:
        try:
            while True:
                d = self._q.get()
                if d is None:
                    return
                if not self._begin(d):
                    continue
                out = run_job(self.app, d, self.want_result, self.before)
                if not self._end(d, out):
                    return  # abandoned at a timeout: a replacement thread has our slot
        except (JobTimeout, JobCancelled):
            return  # the asynchronous exception landed outside the handler

    def drain_unstarted(self) -> list[Dispatch]:
        out: list[Dispatch] = []
        while True:
            try:
                d = self._q.get_nowait()
            except Empty:
                break
            if d is None:
                continue
            with self._lock:
                if d.state == Dispatch.QUEUED:
                    d.state = Dispatch.DRAINED
                    out.append(d)
        return out

    def _watch(self) -> None:
        while not self._closed:
            time.sleep(0.05)
            now = time.monotonic()
            expired: list[Dispatch] = []
            with self._lock:
                for d in list(self._running.values()):
                    if d.deadline and now >= d.deadline:
                        d.state = Dispatch.ABANDONED
                        del self._running[id(d)]
                        expired.append(d)
                        raise_in_thread(getattr(d.thread, "ident", None), JobTimeout)
            for d in expired:
                log.warning(
                    "job %s (%s) ran past its timeout of %g s: failed; its thread is abandoned",
                    d.job.id if d.job else "?",
                    d.handler.name if d.handler else "?",
                    d.limit,
                )
                if self.replace_on_timeout:
                    self._spawn()
                self.on_done(d, timed_out(d.job, d.limit, d.started))

    def _replace(self) -> None:
        if self.replace_on_timeout:
            self._spawn()

    def close(self) -> None:
        super().close()
        for _ in range(self.concurrency):
            self._q.put(None)


class SoloPool(ThreadPool):
    """Runs each job inline in the fetching thread: no concurrency, no handoff."""

    name = "solo"
    replace_on_timeout = False

    def start(self) -> None:
        self._watchdog.start()

    def submit(self, d: Dispatch) -> None:
        try:
            if self._begin(d):
                out = run_job(self.app, d, self.want_result, self.before)
                self._end(d, out)
        except (JobTimeout, JobCancelled):
            pass  # landed just after the handler returned; the watchdog reported it

    def close(self) -> None:
        self._closed = True


# --- processes --------------------------------------------------------------------------


def _child_main(import_path: str, conn: Connection, want_result: bool) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the parent decides what
    # happens to running jobs, so the child ignores it. SIGTERM keeps its default, so
    # pools the handler starts itself can still be terminated.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from gridq.worker.app import load_app

    app = load_app(import_path)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        d = Dispatch(msg[0])
        out = run_job(app, d, want_result)
        conn.send(out)


def _nothing() -> None:
    pass


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


class _Child:
    def __init__(self, ctx: Any, import_path: str, want_result: bool) -> None:
        self.conn, child_conn = ctx.Pipe()
        # daemon=False: a daemonic process may not have children, and handlers may
        # well start a multiprocessing.Pool of their own.
        self.proc = ctx.Process(
            target=_child_main,
            args=(import_path, child_conn, want_result),
            name="gridq-child",
            daemon=False,
        )
        self.proc.start()
        child_conn.close()
        self.jobs = 0

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(1)
        self.conn.close()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(1)
        self.conn.close()


class ProcessPool(Pool):
    """N non-daemonic child processes, each fed by one slot thread in the worker."""

    name = "processes"

    def __init__(
        self,
        app: App,
        concurrency: int,
        want_result: bool,
        on_done: OnDone,
        *,
        max_jobs_per_child: int = 1000,
        max_rss_mb: int = 0,
    ) -> None:
        super().__init__(app, concurrency, want_result, on_done)
        if not app.import_path:
            raise ValueError("the processes pool needs an app loaded from 'module:attr'")
        self.import_path = app.import_path
        self.max_jobs = max_jobs_per_child
        self.max_rss_mb = max_rss_mb
        # Imported here, not at the top: only this pool needs it, and the default
        # (threads) worker idles without it (docs/benchmarks.md, idle memory).
        import multiprocessing

        # spawn, not fork: the worker has threads and open Redis sockets by now.
        self._ctx = multiprocessing.get_context("spawn")
        self._q: SimpleQueue[Dispatch | None] = SimpleQueue()
        self._children: set[_Child] = set()

    def start(self) -> None:
        for i in range(self.concurrency):
            threading.Thread(target=self._slot, name=f"gridq-slot-{i}", daemon=True).start()

    def submit(self, d: Dispatch) -> None:
        self._q.put(d)

    drain_unstarted = ThreadPool.drain_unstarted

    def _new_child(self) -> _Child:
        c = _Child(self._ctx, self.import_path, self.want_result)
        with self._lock:
            self._children.add(c)
        return c

    def _drop(self, c: _Child, kill: bool) -> None:
        with self._lock:
            self._children.discard(c)
        c.kill() if kill else c.stop()

    def _slot(self) -> None:
        child: _Child | None = None
        while True:
            d = self._q.get()
            if d is None:
                break
            d.interrupt = _nothing  # set before _begin: cancel never raises in this thread
            if not self._begin(d):
                continue
            job, handler, dead = prepare(self.app, d.item)
            d.job, d.handler = job, handler
            if dead is not None:
                self._end(d, dead)
                continue
            assert job is not None and handler is not None
            if self.before is not None:
                self.before(job, task_label(job))
            limit = timeout_of(job, handler)
            if child is None or not child.proc.is_alive():
                child = self._new_child()
            d.interrupt = child.proc.kill
            if d.state != Dispatch.RUNNING:
                continue  # cancelled before it reached the child
            out: Outcome
            try:
                child.conn.send((d.item,))
                if child.conn.poll(limit):
                    out = child.conn.recv()
                else:
                    assert limit is not None
                    log.warning(
                        "job %s (%s) ran past its timeout of %g s: child %s killed",
                        job.id,
                        handler.name,
                        limit,
                        child.proc.pid,
                    )
                    self._drop(child, kill=True)
                    child = None
                    out = timed_out(job, limit, d.started)
            except (EOFError, OSError) as exc:
                code = child.proc.exitcode if child else None
                if child is not None:
                    self._drop(child, kill=True)
                child = None
                out = failed(
                    job, RuntimeError(f"worker process died (exit code {code}): {exc}"), d.started
                )
            if child is not None:
                child.jobs += 1
                if (self.max_jobs and child.jobs >= self.max_jobs) or (
                    self.max_rss_mb and _rss_mb(child.proc.pid) > self.max_rss_mb
                ):
                    self._drop(child, kill=False)  # recycled; the next job starts a fresh one
                    child = None
            self._end(d, out)
        if child is not None:
            self._drop(child, kill=False)

    def close(self) -> None:
        super().close()
        for _ in range(self.concurrency):
            self._q.put(None)
        # The slot threads stop their children; give them a moment, then make sure.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            with self._lock:
                if not self._children:
                    return
            time.sleep(0.05)
        self.kill_children()

    def kill_children(self) -> None:
        with self._lock:
            children = list(self._children)
            self._children.clear()
        for c in children:
            c.kill()


# --- asyncio ----------------------------------------------------------------------------


class AsyncioPool(Pool):
    """One event loop in one thread; ``concurrency`` coroutines at a time. Plain
    ``def`` handlers run in the loop's default executor so they cannot block it."""

    name = "asyncio"
    may_block = False  # on_done runs on the event loop

    def __init__(self, app: App, concurrency: int, want_result: bool, on_done: OnDone) -> None:
        super().__init__(app, concurrency, want_result, on_done)
        self._loop = asyncio.new_event_loop()
        self._queued: dict[int, Dispatch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sem: asyncio.Semaphore | None = None
        self._thread = threading.Thread(target=self._run_loop, name="gridq-asyncio", daemon=True)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._sem = asyncio.Semaphore(self.concurrency)
        self._loop.run_forever()

    def start(self) -> None:
        self._thread.start()

    def submit(self, d: Dispatch) -> None:
        with self._lock:
            self._queued[id(d)] = d
        self._loop.call_soon_threadsafe(self._spawn, d)

    def _spawn(self, d: Dispatch) -> None:
        t = self._loop.create_task(self._run(d))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def drain_unstarted(self) -> list[Dispatch]:
        with self._lock:
            out = [d for d in self._queued.values() if d.state == Dispatch.QUEUED]
            for d in out:
                d.state = Dispatch.DRAINED
            self._queued.clear()
        return out

    async def _run(self, d: Dispatch) -> None:
        assert self._sem is not None
        async with self._sem:
            with self._lock:
                self._queued.pop(id(d), None)
            task = asyncio.current_task()
            assert task is not None
            d.interrupt = partial(self._loop.call_soon_threadsafe, task.cancel)
            if not self._begin(d):
                return
            job, handler, dead = prepare(self.app, d.item)
            d.job, d.handler = job, handler
            out: Outcome
            if dead is not None:
                out = dead
            else:
                assert job is not None and handler is not None
                if self.before is not None:
                    self.before(job, task_label(job))
                args, kwargs = call_args(job)
                limit = timeout_of(job, handler)
                try:
                    if handler.is_async:
                        coro = handler.fn(*args, **kwargs)
                    else:
                        coro = asyncio.to_thread(handler.fn, *args, **kwargs)
                    value = await (asyncio.wait_for(coro, limit) if limit else coro)
                    out = succeeded(job, value, d.started, self.want_result)
                except TimeoutError as exc:
                    if limit and time.perf_counter() - d.started >= limit * 0.99:
                        out = timed_out(job, limit, d.started)
                    else:
                        out = failed(job, exc, d.started)
                except BaseException as exc:  # any handler failure is an outcome
                    out = failed(job, exc, d.started)
        self._end(d, out)

    def close(self) -> None:
        super().close()
        self._loop.call_soon_threadsafe(self._loop.stop)


def make_pool(
    name: str,
    app: App,
    concurrency: int,
    want_result: bool,
    on_done: OnDone,
    *,
    max_jobs_per_child: int = 1000,
    max_rss_mb: int = 0,
    before: BeforeJob | None = None,
) -> Pool:
    pool: Pool
    if name == "threads":
        pool = ThreadPool(app, concurrency, want_result, on_done)
    elif name == "solo":
        pool = SoloPool(app, 1, want_result, on_done)
    elif name == "asyncio":
        pool = AsyncioPool(app, concurrency, want_result, on_done)
    elif name == "processes":
        pool = ProcessPool(
            app,
            concurrency,
            want_result,
            on_done,
            max_jobs_per_child=max_jobs_per_child,
            max_rss_mb=max_rss_mb,
        )
    else:
        raise ValueError(f"unknown pool {name!r}: threads, processes, solo or asyncio")
    pool.before = before
    return pool


__all__ = ["ERROR", "AsyncioPool", "Pool", "ProcessPool", "SoloPool", "ThreadPool", "make_pool"]
