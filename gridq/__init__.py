"""gridq: a Redis-backed task grid."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridq.canvas import chain, chord, group
    from gridq.failure import Failure
    from gridq.jobs import JobCancelled, JobFailed, JobHandle, JobUnknown
    from gridq.queue import Queue

__version__ = "0.1.0"
__all__ = [
    "Failure",
    "chain",
    "chord",
    "group",
    "JobCancelled",
    "JobFailed",
    "JobHandle",
    "JobUnknown",
    "Queue",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use: every gridq module imports this package first, and a handler
    # module's `from gridq.worker import App` must not pull in the Redis client.
    if name == "Queue":
        from gridq.queue import Queue

        return Queue
    if name in ("JobHandle", "JobFailed", "JobCancelled", "JobUnknown"):
        from gridq import jobs

        return getattr(jobs, name)
    if name in ("chain", "group", "chord"):
        from gridq import canvas

        return getattr(canvas, name)
    if name == "Failure":
        from gridq.failure import Failure

        return Failure
    raise AttributeError(f"module 'gridq' has no attribute {name!r}")
