"""Hooks around a job's life, in the spirit of Dramatiq's middleware.

Hooks run in the worker's threads (``before_job`` in the thread that runs the job,
``after_job`` in the one that finished it, the outcome hooks in the thread that settles
it), so they must be quick and must not raise: an exception in a hook is logged and
ignored, never allowed to lose a job. The per-job hooks cost nothing unless some
middleware overrides them (``overriding``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridq.protocol import Job
    from gridq.worker.results import Outcome

log = logging.getLogger("gridq.worker")


class Middleware:
    """Override what you need; every hook is optional."""

    def on_start(self, worker: object) -> None:
        """The worker is about to take jobs."""

    def on_stop(self, worker: object) -> None:
        """The worker has stopped taking jobs and is about to exit."""

    def before_job(self, job: Job, task: str) -> None:
        """The job's handler is about to run, in the thread that runs it (asyncio pool:
        on the event loop; processes pool: in the worker's thread that hands the job to
        a child process)."""

    def after_job(self, job: Job, task: str, outcome: Outcome) -> None:
        """The job's handler finished, whatever its outcome (a timeout too), before the
        job is settled; in the thread that finished it. Not called for a job that never
        ran (malformed, unknown task: ``on_dead``)."""

    def on_ok(self, job: Job, task: str, duration: float) -> None:
        """The job succeeded and is acknowledged."""

    def on_retry(self, job: Job, task: str, delay: float, duration: float) -> None:
        """The job failed and runs again after ``delay`` seconds."""

    def on_failed(self, job: Job, task: str, reason: str, duration: float) -> None:
        """The handler failed for good (retries exhausted, or Reject): dead-lettered."""

    def on_dead(self, job: Job | None, task: str, reason: str) -> None:
        """The job could not run at all (malformed, unknown task, no handler): dead-lettered.
        ``job`` is None if the envelope was malformed."""


def call(hooks: list[Middleware], name: str, *args: object) -> None:
    for m in hooks:
        try:
            getattr(m, name)(*args)
        except Exception:  # a broken hook must not break the job's bookkeeping
            log.exception("middleware %s.%s failed", type(m).__name__, name)


def overriding(hooks: list[Middleware], name: str) -> list[Middleware]:
    """The middleware that overrides hook ``name``; callers skip the hook when empty."""
    base = getattr(Middleware, name)
    return [m for m in hooks if getattr(type(m), name, base) is not base]
