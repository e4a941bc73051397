"""The retry policy: exponential backoff with jitter, then the dead-letter queue.

A failed attempt waits in the queue's delayed ZSET (in Redis, not in worker memory,
so a restart loses nothing); any worker's promoter moves it back once due.

Defaults: 3 retries (4 runs in all), 1 s base, doubling per attempt, capped at 300 s,
"equal jitter" (half the delay fixed, half random) so a burst of failures does not
come back as a burst. ``Retry(delay)`` replaces the computed delay but still counts
as a try; ``Reject`` dead-letters at once.

Replaceable: ``Worker(app, retry_policy=...)`` takes any object with this ``decide``
(a ``RetryPolicy``), e.g. a subclass of ``Retries`` (docs/worker.md).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gridq.protocol import Job
    from gridq.worker.app import Task
    from gridq.worker.results import Outcome


@dataclass(frozen=True, slots=True)
class Decision:
    retry: bool
    delay: float = 0.0
    reason: str = ""


class RetryPolicy(Protocol):
    def decide(self, job: Job, task: Task[Any, Any] | None, outcome: Outcome) -> Decision:
        """A handler failed (``outcome.kind == "error"``): retry after a delay, or
        dead-letter with a reason. Runs in the worker's settling thread: keep it quick."""
        ...


class Retries:
    """The default policy; its arguments are the defaults for tasks that set none."""

    def __init__(self, retries: int = 3, backoff: float = 1.0, max_backoff: float = 300.0) -> None:
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff

    def max_retries(self, job: Job, task: Task[Any, Any] | None) -> int:
        if job.retries is not None:
            return job.retries
        if task is not None and task.options.retries is not None:
            return task.options.retries
        return self.retries

    def delay_for(self, attempt: int, task: Task[Any, Any] | None) -> float:
        base = self.backoff
        cap = self.max_backoff
        if task is not None:
            base = task.options.backoff or base
            cap = task.options.max_backoff or cap
        full = min(cap, base * (2 ** min(attempt, 32)))
        return full / 2 + random.uniform(0, full / 2)

    def decide(self, job: Job, task: Task[Any, Any] | None, outcome: Outcome) -> Decision:
        if outcome.reject:
            return Decision(False, reason="rejected by the handler")
        limit = self.max_retries(job, task)
        if job.attempt >= limit:
            return Decision(False, reason=f"retries exhausted ({job.attempt + 1} tries)")
        if outcome.retry_delay is not None:
            return Decision(True, max(0.0, float(outcome.retry_delay)))
        return Decision(True, self.delay_for(job.attempt, task))
