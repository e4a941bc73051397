"""Running one job through the app and describing what happened (an ``Outcome``).

Shared by every pool: the threads and solo pools call ``run_job`` in the worker, the
processes pool in a child (the Outcome is pickled back), the asyncio pool uses the
``prepare`` / ``succeeded`` / ``failed`` parts around an ``await``. Result bytes are
built here, in the thread that ran the job, so the settling thread only moves bytes.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gridq import protocol
from gridq.errors import JobTimeout, Reject, Retry
from gridq.failure import revive

if TYPE_CHECKING:
    from gridq.worker.app import App, Task

OK = "ok"
ERROR = "error"  # the handler raised: the retry policy decides
DEAD = "dead"  # cannot run at all (malformed, unknown task, no handler): no retry
CANCELLED = "cancelled"  # cancelled while running (JobHandle.cancel): acknowledged, no retry

MAX_TRACEBACK = 16_000
# One encoder, not json.dumps(default=...) per job (that builds a new one each call).
_VALUE = json.JSONEncoder(separators=(",", ":"), default=str)


@dataclass(slots=True)
class Outcome:
    kind: str
    task: str
    duration: float = 0.0
    result: bytes | None = None  # what goes to the output queue on success
    value: str | None = None  # the return value as JSON, for the job's record
    error_type: str = ""
    message: str = ""
    traceback: str | None = None
    reason: str = ""  # why a DEAD job is dead
    retry_delay: float | None = None  # Retry(delay) from the handler
    reject: bool = False
    timeout: bool = False


# The middleware's before_job(job, task), bound to the worker's hooks.
BeforeJob = Callable[[protocol.Job, str], None]


def task_label(job: protocol.Job | None) -> str:
    if job is None:
        return "?"
    return job.task or "default"


def prepare(
    app: App, item: bytes
) -> tuple[protocol.Job | None, Task[Any, Any] | None, Outcome | None]:
    """Decode and find the handler; an Outcome instead if the job cannot run."""
    try:
        job = protocol.decode(item)
    except protocol.MalformedJob as exc:
        return (
            None,
            None,
            Outcome(
                DEAD, "?", error_type="MalformedJob", message=str(exc), reason="malformed envelope"
            ),
        )
    if app.verifier is not None and (bad := app.verifier.check(job.item, job.is_raw)):
        kind = {"error_type": bad.error_type, "message": bad.message, "reason": bad.reason}
        return job, None, Outcome(DEAD, task_label(job), **kind)
    handler = app.handler_for(job)
    if handler is None:
        if job.task is None:
            why = "raw item but the app has no @app.default handler"
            etype = "NoDefaultHandler"
        else:
            why = f"unknown task {job.task!r}"
            etype = "UnknownTask"
        return job, None, Outcome(DEAD, task_label(job), error_type=etype, message=why, reason=why)
    return job, handler, None


def timeout_of(job: protocol.Job, handler: Task[Any, Any]) -> float | None:
    return job.timeout if job.timeout is not None else handler.options.timeout


def call_args(job: protocol.Job) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if job.raw is not None:
        return (job.raw,), {}
    if job.wf is not None and job.wf.get("c") and job.args:
        # A chord callback: Failure markers in its first argument become Failure objects.
        return (revive(job.args[0]), *job.args[1:]), job.kwargs
    return tuple(job.args), job.kwargs


def succeeded(job: protocol.Job, value: Any, started: float, want_result: bool) -> Outcome:
    data: bytes | None = None
    if want_result:
        if job.raw is not None:
            data = protocol.raw_result(value)
        else:
            data = protocol.result_object(job, "ok", result=value)
    # None keeps no result field at all (a reader sees None either way).
    kept = _VALUE.encode(value) if value is not None and job.result_ttl else None
    return Outcome(OK, task_label(job), time.perf_counter() - started, result=data, value=kept)


def cancelled(job: protocol.Job | None, started: float) -> Outcome:
    return Outcome(
        CANCELLED,
        task_label(job),
        time.perf_counter() - started,
        error_type="JobCancelled",
        message="cancelled while running",
    )


def failed(job: protocol.Job | None, exc: BaseException, started: float) -> Outcome:
    tb = "".join(traceback.format_exception(exc))
    out = Outcome(
        ERROR,
        task_label(job),
        time.perf_counter() - started,
        error_type=type(exc).__name__,
        message=str(exc),
        traceback=tb[-MAX_TRACEBACK:],
    )
    if isinstance(exc, Reject):
        out.reject = True
    elif isinstance(exc, Retry):
        out.retry_delay = exc.delay
    elif isinstance(exc, JobTimeout):
        out.timeout = True
    return out


def timed_out(job: protocol.Job | None, seconds: float, started: float) -> Outcome:
    return Outcome(
        ERROR,
        task_label(job),
        time.perf_counter() - started,
        error_type="JobTimeout",
        message=f"the job ran past its timeout of {seconds:g} s",
        timeout=True,
    )


class Dispatch:
    """One claimed item on its way through a pool. ``state`` moves QUEUED -> RUNNING ->
    DONE (or ABANDONED when a timeout gave up on it); transitions happen under the
    pool's lock so exactly one party reports the outcome."""

    __slots__ = (
        "item",
        "job",
        "handler",
        "state",
        "started",
        "deadline",
        "limit",
        "thread",
        "interrupt",
    )

    QUEUED, RUNNING, DONE, ABANDONED, DRAINED = range(5)

    def __init__(self, item: bytes) -> None:
        self.item = item
        self.job: protocol.Job | None = None
        self.handler: Task[Any, Any] | None = None
        self.state = Dispatch.QUEUED
        self.started = 0.0
        self.deadline = 0.0  # monotonic; 0 = none
        self.limit = 0.0
        self.thread: Any = None
        # How to stop it when cancelled, if not by raising in ``thread`` (a child's
        # kill, an asyncio task's cancel); set by the pool that runs it.
        self.interrupt: Callable[[], Any] | None = None


def run_job(app: App, d: Dispatch, want_result: bool, before: BeforeJob | None = None) -> Outcome:
    """Run one job here and now. Sets ``d.job``/``d.handler``, and ``d.deadline`` if the
    job has a timeout (a watchdog enforces it where the pool can). ``before`` (the
    middleware's ``before_job``) runs just before the handler."""
    started = time.perf_counter()
    job, handler, dead = prepare(app, d.item)
    d.job = job
    if dead is not None:
        return dead
    assert job is not None and handler is not None
    d.handler = handler
    if before is not None:
        before(job, task_label(job))
    limit = timeout_of(job, handler)
    if limit is not None:
        d.limit = limit
        d.deadline = time.monotonic() + limit
    args, kwargs = call_args(job)
    try:
        value = handler.fn(*args, **kwargs)
        if handler.is_async:
            # An async handler outside the asyncio pool gets its own short-lived loop.
            value = asyncio.run(value)
    except BaseException as exc:  # any handler failure is an outcome
        return failed(job, exc, started)
    return succeeded(job, value, started, want_result)
