"""The worker: fetch, dispatch, settle, heartbeat, shut down.

Threads (all daemonic, so a handler that never returns cannot hold the exit):

* **fetcher** claims jobs in batches (one Lua call moves up to ``room`` items into
  this consumer's in-flight list), blocks on BLMOVE when the queue is empty, and
  hands each item to the pool. It keeps at most ``concurrency + prefetch`` jobs
  claimed and unfinished.
* **pool** threads / children / loop run the handlers (see pools.py).
* **settler** collects finished jobs and records their outcomes in batches: one
  atomic SETTLE script per batch (acks, results, retries, dead letters, counters).
  When the queue is dry and nothing else is claimed, the thread that ran the job
  settles it itself (no batch to wait for; the hand-off would add a thread wake-up to
  the job's latency), unless the pool says its threads must not block (asyncio).
* **heartbeat** renews the lease (every lease/3), reaps dead consumers' jobs (every
  lease/2) and promotes due delayed jobs (every 0.25 s).
* the **main** thread only handles signals and supervises shutdown, so a signal never
  interrupts Redis I/O half-way.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from queue import Empty, SimpleQueue
from typing import Any

import redis

from gridq import __version__, durability, protocol, wfstate
from gridq import contract as c
from gridq.errors import (
    EXIT_OK,
    EXIT_REDIS_AUTH,
    ConfigError,
    RedisAuthError,
    RedisUnavailable,
)
from gridq.metrics_http import MetricsServer
from gridq.outage import OutageLog
from gridq.queue import Queue
from gridq.redisurl import check, explain, mask
from gridq.worker.app import App
from gridq.worker.broker import (
    MAX_BATCH,
    Broker,
    Limit,
    RecordUpdate,
    Settlement,
    make_client,
)
from gridq.worker.metrics import Metrics
from gridq.worker.middleware import Middleware, call, overriding
from gridq.worker.pools import Pool, ProcessPool, make_pool
from gridq.worker.results import CANCELLED, DEAD, OK, Dispatch, Outcome
from gridq.worker.retries import Retries, RetryPolicy
from gridq.worker.settings import WorkerSettings, load_worker_settings

log = logging.getLogger("gridq.worker")


class Worker:
    def __init__(
        self,
        app: App,
        settings: WorkerSettings | None = None,
        *,
        burst: bool | None = None,
        middleware: Iterable[Middleware] = (),
        retry_policy: RetryPolicy | None = None,
        install_signals: bool = True,
    ) -> None:
        self.app = app
        self.settings = s = settings if settings is not None else load_worker_settings()
        app.configure(s)
        if not app.input_url:
            raise ConfigError(
                f"no input Redis URL: set {c.ENV_INPUT_REDIS_URL} or App(input_url=...)"
            )
        if not app.input_queue:
            raise ConfigError(f"no input queue: set {c.ENV_INPUT_QUEUE} or App(input_queue=...)")
        self.input_url: str = app.input_url
        self.output_url: str = app.output_url or app.input_url
        self.queue: str = app.input_queue
        self.output_queue = app.output_queue or None
        self.consumer_id = (
            s.instance_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.burst = s.worker_burst if burst is None else burst
        self.install_signals = install_signals
        self.pool_name = s.worker_pool
        self.concurrency = s.concurrency
        self.capacity = self.concurrency + s.prefetch
        # Refill once half the prefetch has been used: batches stay large under load,
        # and an idle worker (nothing claimed) always asks at once.
        self.low_water = self.capacity - max(1, s.prefetch // 2)
        self.lease = s.worker_lease_seconds
        self.grace = s.worker_grace_seconds

        self._cond = threading.Condition()
        self._pending: int = 0  # claimed and not finished running (fetcher's budget)
        self.retries: RetryPolicy = retry_policy if retry_policy is not None else Retries()
        self.metrics = Metrics(
            self.queue,
            {
                "queue": self.queue,
                "task_name": s.task_name,
                "node_id": s.node_id,
                "instance_id": self.consumer_id,
                "pool": self.pool_name,
                "concurrency": str(self.concurrency),
                "version": __version__,
            },
            lambda: float(self._pending),
        )
        self.middleware: list[Middleware] = [self.metrics, *middleware]
        # Per-job hooks only when some middleware has them: the hot path stays bare.
        self._before_job = overriding(self.middleware, "before_job")
        self._after_job = overriding(self.middleware, "after_job")
        self._unsettled = 0  # finished, outcome not yet written
        self._claimed: Counter[bytes] = Counter()  # claimed, not settled/requeued
        self._claimed_lock = threading.Lock()
        # Concurrency-limited tasks, and the slots this worker holds (task -> job ids):
        # the heartbeat renews their leases; settling frees them.
        self._slot_tasks: set[str] = set()
        self._held: dict[str, set[str]] = {}
        self._done: SimpleQueue[tuple[Dispatch, Outcome]] = SimpleQueue()
        self._settle_lock = threading.Lock()
        self._stopping = False
        self._force = False
        self._closed = False  # run() returned: every thread of ours winds down
        self._signals = 0
        self._burst_done = False
        self._fatal: int | None = None
        self._fatal_msg = ""
        self._last_beat = 0.0
        # One line when Redis goes away, one when it is back; backoff in between.
        self._outage = OutageLog(
            log, down_level=logging.ERROR, up_message="Redis is reachable again after %.1f s"
        )
        self._reconciled = 0
        self.metrics_port: int | None = None
        self.pool: Pool | None = None
        self.broker: Broker | None = None
        self._threads: list[threading.Thread] = []

    # --- start-up -----------------------------------------------------------------------

    def _wait_for(self, url: str) -> None:
        """PING until Redis answers; wrong credentials raise at once (no retry loop)."""
        logged = False
        while True:
            try:
                check(url, timeout=2.0)
                if logged:
                    log.warning("Redis at %s is reachable", mask(url))
                return
            except RedisUnavailable as exc:
                if not logged:
                    log.error("%s; waiting for it", exc)
                    logged = True
                if self._signals:
                    raise
                time.sleep(1.0)

    def setup(self) -> None:
        self._wait_for(self.input_url)
        if self.output_queue and self.output_url != self.input_url:
            self._wait_for(self.output_url)
        conn = make_client(self.input_url)
        out_conn = make_client(self.output_url) if self.output_url != self.input_url else None
        self.broker = b = Broker(
            conn,
            self.queue,
            self.consumer_id,
            out_conn=out_conn,
            output_queue=self.output_queue,
            lease=self.lease,
            limits=self._limits(),
            min_replicas=durability.min_replicas(self.input_url, self.settings.redis_min_replicas),
            out_min_replicas=durability.min_replicas(
                self.output_url, self.settings.redis_min_replicas
            ),
            node=self.settings.node_id,
        )
        # The lease exists before the first claim, so no claimed job is ever unleased.
        b.heartbeat()
        self._last_beat = time.monotonic()
        leftovers = b.inflight_items()
        if leftovers:
            # Same INSTANCE_ID as a previous life that died: its jobs run again first.
            n = b.requeue(list(reversed(leftovers)))
            log.warning(
                "requeued %d job(s) left in flight by a previous run of %s", n, self.consumer_id
            )
        try:
            self.pool = make_pool(
                self.pool_name,
                self.app,
                self.concurrency,
                self.output_queue is not None,
                self._on_done,
                max_jobs_per_child=self.settings.worker_max_jobs_per_child,
                max_rss_mb=self.settings.worker_max_rss_mb,
                before=partial(call, self._before_job, "before_job") if self._before_job else None,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.pool.start()
        if self.settings.metrics_port is not None:
            try:
                srv = MetricsServer(
                    self.metrics.registry,
                    self.health,
                    self.settings.metrics_host,
                    self.settings.metrics_port,
                )
            except OSError as exc:
                log.error(
                    "metrics endpoint not started on port %s: %s", self.settings.metrics_port, exc
                )
            else:
                srv.start()
                self._metrics_server: MetricsServer | None = srv
                self.metrics_port = srv.port
        for target, name in (
            (self._settle_loop, "gridq-settle"),
            (self._heartbeat_loop, "gridq-heartbeat"),
            (self._fetch_loop, "gridq-fetch"),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        call(self.middleware, "on_start", self)
        log.info(
            "worker %s: queue %s on %s, pool %s x%d%s",
            self.consumer_id,
            self.queue,
            mask(self.input_url),
            self.pool_name,
            self.concurrency,
            f", metrics on :{self.metrics_port}" if self.metrics_port is not None else "",
        )

    def _limits(self) -> list[Limit]:
        """The app's grid-wide limits, which the claim scripts enforce."""
        out = []
        for name, t in self.app.tasks.items():
            o = t.options
            if o.rate_limit or o.concurrency_limit:
                out.append(Limit(name, o.rate_interval, o.concurrency_limit or 0))
                if o.concurrency_limit:
                    self._slot_tasks.add(name)
        return out

    def health(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self._last_beat
        ok = self._fatal is None and age < self.lease
        return ok, {
            "status": "ok" if ok else "unhealthy",
            "consumer": self.consumer_id,
            "queue": self.queue,
            "heartbeat_age": round(age, 3),
            "in_flight": self._pending,
        }

    # --- the main thread ----------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only counts: the main loop acts on it. No locks, no I/O in a signal handler.
        self._signals += 1

    def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        old: dict[signal.Signals, Any] = {}
        if self.install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                old[sig] = signal.signal(sig, self._on_signal)
        try:
            try:
                self.setup()
            except RedisAuthError as exc:
                self._fatal_msg = str(exc)
                log.error("%s", exc)
                return EXIT_REDIS_AUTH
            return self._supervise()
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
            self._teardown()

    def _supervise(self) -> int:
        grace_deadline = 0.0
        while True:
            time.sleep(0.05)
            if self._fatal is not None:
                self._stopping = self._force = True
                return self._fatal
            if self._signals >= 2:
                log.warning("second signal: requeueing running jobs and exiting now")
                self._force_stop()
                return EXIT_OK
            if not self._stopping and (self._signals or self._burst_done):
                if self._signals:
                    log.info(
                        "stopping: no new jobs; waiting up to %g s for %d running",
                        self.grace,
                        len(self.pool.running()) if self.pool else 0,
                    )
                self._begin_stop()
                grace_deadline = time.monotonic() + self.grace
            if self._stopping:
                fetcher_alive = any(t.name == "gridq-fetch" and t.is_alive() for t in self._threads)
                if not fetcher_alive:
                    self._requeue_unstarted()
                    if self._pending == 0:
                        self._flush()
                        if self._unsettled == 0:
                            self._leave()
                            log.info("stopped cleanly")
                            return EXIT_OK
                if time.monotonic() >= grace_deadline:
                    log.warning("grace period of %g s over: requeueing running jobs", self.grace)
                    self._force_stop()
                    return EXIT_OK

    def _begin_stop(self) -> None:
        self._stopping = True
        with self._cond:
            self._cond.notify_all()
        self._requeue_unstarted()

    def _requeue_unstarted(self) -> None:
        if self.pool is None:
            return
        ds = self.pool.drain_unstarted()
        if ds:
            self._requeue([d.item for d in ds])
            with self._cond:
                self._pending -= len(ds)

    def _requeue(self, items: list[bytes]) -> None:
        assert self.broker is not None
        self._with_retries(partial(self.broker.requeue, items))
        # Not requeued (Redis gone)? They stay in the in-flight list, and the reaper of
        # another worker returns them once this lease lapses: nothing is lost.
        with self._claimed_lock:
            self._claimed.subtract(items)
            if self._slot_tasks:
                for item in items:  # their slots lapse with the lease; stop renewing them
                    task, job_id = _task_and_id(item)
                    self._held.get(task or "", set()).discard(job_id or "")

    def _force_stop(self) -> None:
        """Exit now: settle what finished, put everything else back at the head."""
        self._stopping = self._force = True
        with self._cond:
            self._cond.notify_all()
        assert self.pool is not None
        try:
            self._flush(timeout=2.0)
        except Exception:  # best effort; unsettled jobs come back via the reaper
            log.exception("could not settle finished jobs")
        ds = self.pool.drain_unstarted() + self.pool.abandon_running()
        if ds:
            self._requeue([d.item for d in sorted(ds, key=lambda d: d.started or 1e18)])
        if isinstance(self.pool, ProcessPool):
            self.pool.kill_children()
        self._leave()

    def _leave(self) -> None:
        assert self.broker is not None
        call(self.middleware, "on_stop", self)
        try:
            self.broker.leave()
        except redis.RedisError:
            pass  # the lease lapses by itself

    def _teardown(self) -> None:
        self._stopping = True
        self._closed = True
        if self.pool is not None:
            self.pool.close()
        srv = getattr(self, "_metrics_server", None)
        if srv is not None:
            srv.stop()
        for t in self._threads:
            if t.name != "gridq-fetch":  # may sit in a 1 s BLMOVE; it exits by itself
                t.join(1.0)

    # --- fetching -----------------------------------------------------------------------

    def _fetch_loop(self) -> None:
        b = self.broker
        assert b is not None and self.pool is not None
        submit = self.pool.submit
        cond = self._cond
        block = 1.0
        while not self._stopping:
            with cond:
                while self._pending > self.low_water and not self._stopping:
                    cond.wait(0.5)
                room = self.capacity - self._pending
            if self._stopping:
                break
            touch = False
            try:
                if self._outage.recoveries != self._reconciled:
                    self._reconcile()
                items = b.claim(room)
                if items is None:  # paused
                    self._idle_wait(0.5)
                    continue
                if b.dropped:
                    self._dropped(b.dropped)
                if not items:
                    if self.burst and self._burst_finished():
                        self._burst_done = True
                        break
                    one = b.wait_claim(0.2 if self.burst else block)
                    if one is None:
                        continue
                    adopted = b.adopt(one)
                    if adopted == "drop":
                        self._dropped([one])
                        continue
                    if adopted == "park":
                        continue
                    items = [one]
                    touch = adopted == "plain"
                self._outage.up()
            except redis.RedisError as exc:
                self._redis_failed(exc, self.input_url)
                continue
            with self._claimed_lock:
                self._claimed.update(items)
                if self._slot_tasks:
                    self._hold(items)
            with cond:
                self._pending += len(items)
            for i, item in enumerate(items):
                if self._stopping:
                    rest = items[i:]
                    with cond:
                        self._pending -= len(rest)
                    self._requeue(rest)
                    break
                submit(Dispatch(item))
            if touch:
                # After the dispatch, not before: the job does not wait for this write.
                try:
                    b.touch_last_claim()
                except redis.RedisError:
                    pass  # informational only; the next claim retries

    def _hold(self, items: list[bytes]) -> None:
        """Note the concurrency slots the claim took for these items (under _claimed_lock)."""
        for item in items:
            task, job_id = _task_and_id(item)
            if task in self._slot_tasks and job_id:
                self._held.setdefault(task, set()).add(job_id)

    def _dropped(self, items: list[bytes]) -> None:
        """Cancelled jobs a claim dropped without running them."""
        for item in items:
            try:
                job: protocol.Job | None = protocol.decode(item)
            except protocol.MalformedJob:
                job = None
            call(self.middleware, "on_cancelled", job, job.task or "default" if job else "?")
            if job is not None and job.wf is not None:
                self._report_dropped(job.wf)

    def _report_dropped(self, wf: dict[str, Any]) -> None:
        """A workflow member cancelled before it started still reports (as a Failure):
        its chord must not wait for it."""
        assert self.broker is not None
        step = wfstate.Step(wf, False, None, "JobCancelled", "cancelled before it started")
        if not self._with_retries(partial(wfstate.report, self.broker.conn, [step])):
            log.error("could not report cancelled workflow member %s", wf)

    def _with_retries(self, fn: Callable[[], object]) -> bool:
        """Run ``fn``, retrying Redis errors with backoff (20 tries); False if it never ran."""
        for _ in range(20):
            try:
                fn()
                return True
            except redis.RedisError as exc:
                try:
                    time.sleep(self._backoff(exc, self.input_url))
                except RedisAuthError:
                    return False
        return False

    def _cancel_running(self, ids: list[str]) -> None:
        """Someone cancelled these jobs; stop the ones running here."""
        if self.pool is None:
            return
        wanted = set(ids)
        for d in self.pool.running():
            if d.job is not None and d.job.id in wanted and self.pool.cancel(d):
                log.info("job %s (%s) cancelled while running", d.job.id, d.job.task)

    def _idle_wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < end:
            time.sleep(0.05)

    def _backoff(self, exc: BaseException, url: str) -> float:
        """Log (once per outage) and return how long to wait. Auth errors are fatal."""
        err = explain(exc, url)
        if isinstance(err, RedisAuthError):
            raise err
        what = str(err) if err else (str(exc) or type(exc).__name__)
        self._outage.down(f"Redis trouble: {what}; retrying with backoff")
        return min(2.0, 0.05 * 2 ** min(self._outage.waited() * 2, 6))

    def _redis_failed(self, exc: BaseException, url: str) -> None:
        try:
            delay = self._backoff(exc, url)
        except RedisAuthError as err:
            self._fatal_msg = str(err)
            log.error("%s", err)
            self._fatal = EXIT_REDIS_AUTH
            return
        self._idle_wait(delay)

    def _reconcile(self) -> None:
        """After an outage: items in our in-flight list that we do not hold (a claim
        whose reply was lost) go back to the queue."""
        assert self.broker is not None
        self._reconciled = self._outage.recoveries
        items = self.broker.inflight_items()
        with self._claimed_lock:
            held = Counter(self._claimed)
        extra = Counter(items) - held
        if not extra:
            return
        back: list[bytes] = []
        for item in reversed(items):  # oldest first
            if extra[item] > 0:
                extra[item] -= 1
                back.append(item)
        n = self.broker.requeue(back)
        log.warning("requeued %d job(s) whose claim was cut by the outage", n)

    def _burst_finished(self) -> bool:
        if self._pending or self._unsettled:
            return False
        assert self.broker is not None
        st = Queue(self.broker.conn, self.queue).stats()
        return st["depth"] == 0 and st["delayed"] == 0 and st["in_flight"] == 0

    # --- finishing ----------------------------------------------------------------------

    def _on_done(self, d: Dispatch, out: Outcome) -> None:
        # Called once per job by the pool, from whichever thread finished it.
        if self._after_job and d.handler is not None:  # it ran (else on_dead only)
            call(self._after_job, "after_job", d.job, out.task, out)
        with self._cond:
            self._pending -= 1
            self._unsettled += 1
            alone = self._pending == 0
            if self._pending == self.low_water:
                self._cond.notify()
        if alone and self._settle_here(d, out):
            return
        self._done.put((d, out))

    def _settle_here(self, d: Dispatch, out: Outcome) -> bool:
        """Settle ``d`` in the calling thread if it may (True: done): only after the last
        claim emptied the queue (nothing to batch it with), only the thread that ran it,
        in a pool whose threads may block on Redis, while no settle runs. A watchdog or
        canceller reporting for another thread never does: it must stay free for its own
        work through a Redis outage."""
        assert self.pool is not None and self.broker is not None
        if not self.broker.emptied or not self.pool.may_block:
            return False
        if d.thread is not threading.current_thread():
            return False
        if not self._settle_lock.acquire(blocking=False):
            return False
        try:
            self._settle_batch(self._drain([(d, out)]))
        finally:
            self._settle_lock.release()
        return True

    def _settle_loop(self) -> None:
        while not (self._force or self._closed):
            try:
                first = self._done.get(timeout=0.25)
            except Empty:
                continue
            with self._settle_lock:
                self._settle_batch(self._drain([first]))

    def _drain(self, batch: list[tuple[Dispatch, Outcome]]) -> list[tuple[Dispatch, Outcome]]:
        get = self._done.get_nowait
        while len(batch) < MAX_BATCH:
            try:
                batch.append(get())
            except Empty:
                break
        return batch

    def _flush(self, timeout: float | None = None) -> None:
        """Settle everything finished so far, from the calling thread."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._settle_lock:
                batch = self._drain([])
                if not batch:
                    return
                self._settle_batch(batch, end)

    def _settle_batch(
        self, batch: list[tuple[Dispatch, Outcome]], end: float | None = None
    ) -> None:
        assert self.broker is not None
        s = Settlement()
        hooks: list[tuple[str, tuple[Any, ...]]] = []
        want_result = self.output_queue is not None
        now = time.time()
        now_s = repr(now)
        wf_steps: list[wfstate.Step] = []  # finished workflow members (docs/workflows.md)
        for d, out in batch:
            job = d.job
            status = ""
            if out.kind == OK:
                s.acks.append(d.item)
                if out.result is not None:
                    s.results.append(out.result)
                hooks.append(("on_ok", (job, out.task, out.duration)))
                status = "succeeded"
            elif out.kind == CANCELLED:
                s.acks.append(d.item)
                hooks.append(("on_cancelled", (job, out.task)))
                status = "cancelled"
            elif out.kind == DEAD or job is None:
                s.deads.append((d.item, self._dead_record(d, out, out.reason)))
                if want_result and job is not None and job.raw is None:
                    s.results.append(self._error_result(job, out))
                hooks.append(("on_dead", (job, out.task, out.reason)))
                status = "dead"
            else:
                decision = self.retries.decide(job, d.handler, out)
                s.failed += 1
                if decision.retry:
                    new = protocol.with_attempt(job, job.attempt + 1)
                    s.retries.append((d.item, new, now + decision.delay))
                    hooks.append(("on_retry", (job, out.task, decision.delay, out.duration)))
                    status = "retrying"
                else:
                    s.deads.append((d.item, self._dead_record(d, out, decision.reason)))
                    if want_result and job.raw is None:
                        s.results.append(self._error_result(job, out))
                    hooks.append(("on_failed", (job, out.task, decision.reason, out.duration)))
                    status = "dead"
            if job is not None and job.result_ttl:
                s.records.append(self._record(job, out, status, now, now_s))
                if job.wf is not None and status != "retrying":
                    wf_steps.append(_wf_step(job.wf, status, out))
            if job is not None and job.task in self._slot_tasks:
                s.slots.append((job.task, job.id))
        retry = False
        while True:
            try:
                if wf_steps:
                    # Before the ack: a crash in between runs the member again, and its
                    # second report counts once (the barrier's SADD).
                    wfstate.report(self.broker.conn, wf_steps)
                    wf_steps = []
                missing = self.broker.settle(s, retry=retry)
                self._outage.up()
                break
            except redis.RedisError as exc:
                retry = True
                if self._force or (end is not None and time.monotonic() > end):
                    return  # still in flight in Redis: the reaper returns them
                url = self.output_url if getattr(exc, "gridq_output", False) else self.input_url
                self._redis_failed(exc, url)
                if self._fatal is not None:
                    return
        if missing:
            log.warning(
                "%d finished job(s) had been reclaimed meanwhile (lease lapsed): they may run twice",
                missing,
            )
        with self._claimed_lock:
            self._claimed.subtract(d.item for d, _ in batch)
            for task, job_id in s.slots:
                self._held.get(task, set()).discard(job_id)
        with self._cond:
            self._unsettled -= len(batch)
        for name, args in hooks:
            call(self.middleware, name, *args)

    def _dead_record(self, d: Dispatch, out: Outcome, reason: str) -> bytes:
        job = d.job
        if job is None:
            original = d.item
        elif job.raw is not None:
            original = job.raw
        else:
            # attempt 0: Queue.retry_dead() gives the job a fresh set of tries.
            original = protocol.with_attempt(job, 0)
        if out.error_type == "JobTimeout" and not out.message:
            out.message = "timed out"
        return protocol.dead_record(
            original,
            job_id=job.id if job else None,
            task=job.task if job else None,
            reason=reason,
            error_type=out.error_type,
            message=out.message,
            traceback=out.traceback,
            attempts=(job.attempt + 1) if job and out.kind != DEAD else 0,
        )

    def _record(
        self, job: protocol.Job, out: Outcome, status: str, now: float, now_s: str
    ) -> RecordUpdate:
        """The job record's new state (gridq/jobs.py), written by the settle script; the
        consumer and node are the batch's, added there. ``now_s``: repr(now), once a batch."""
        result = (out.value or "") if status == "succeeded" else ""
        err = ""
        if status != "succeeded" and out.error_type:
            # Strings only: the settle script hands these to HSET as they are.
            err = _ERR.encode([str(out.error_type), out.message or "", out.traceback or ""])
        return RecordUpdate(
            job.id,
            status,
            job.result_ttl or 1,
            job.key,
            float(job.unique_for or 0),
            job.attempt + 1,
            repr(now - out.duration),
            "" if status == "retrying" else now_s,
            result,
            err,
        )

    @staticmethod
    def _error_result(job: protocol.Job, out: Outcome) -> bytes:
        return protocol.result_object(job, "error", error=f"{out.error_type}: {out.message}")

    # --- heartbeat, reaper, promoter ----------------------------------------------------

    def _heartbeat_loop(self) -> None:
        b = self.broker
        assert b is not None
        beat_every = self.lease / 3
        reap_every = self.lease / 2
        tick = min(0.25, beat_every)
        next_beat = time.monotonic() + beat_every
        next_reap = time.monotonic()
        while not (self._force or self._closed) and self._fatal is None:
            time.sleep(tick)
            if self._closed:
                return
            now = time.monotonic()
            try:
                if now >= next_beat:
                    if not b.heartbeat():
                        log.warning(
                            "lease of %s had lapsed (no heartbeat for %g s): its jobs may run twice",
                            self.consumer_id,
                            self.lease,
                        )
                    self._last_beat = now
                    next_beat = now + beat_every
                    with self._claimed_lock:
                        held = {t: list(ids) for t, ids in self._held.items() if ids}
                    if held:
                        b.renew_slots(held)
                if now >= next_reap:
                    n = b.reap()
                    if n:
                        log.warning("requeued %d job(s) of dead worker(s) on %s", n, self.queue)
                    next_reap = now + reap_every
                if not self._stopping:
                    _, kill = b.promote()
                    if kill:
                        self._cancel_running(kill)
                self._outage.up()
            except redis.RedisError as exc:
                self._redis_failed(exc, self.input_url)
                next_beat = time.monotonic()  # renew as soon as Redis is back


_ERR = json.JSONEncoder(separators=(",", ":"), default=str)


def _wf_step(wf: dict[str, Any], status: str, out: Outcome) -> wfstate.Step:
    if status == "succeeded":
        return wfstate.Step(wf, True, out.value)
    return wfstate.Step(wf, False, None, out.error_type or status, out.message)


_TASK_ID = re.compile(rb'"(task|id)":"([^"\\]*)"')


def _task_and_id(item: bytes) -> tuple[str | None, str | None]:
    """The task name and job id of an envelope, found the way the claim script finds them."""
    found: dict[bytes, bytes] = {}
    for m in _TASK_ID.finditer(item[:4096]):
        found.setdefault(m.group(1), m.group(2))
        if len(found) == 2:
            break
    task, job_id = found.get(b"task"), found.get(b"id")
    return (task.decode() if task else None, job_id.decode() if job_id else None)
