"""The gridq worker SDK and runtime.

``from gridq.worker import App`` is all a handler module needs; it imports nothing
heavy (no Redis client, no metrics) so that producers importing the same module stay
light. The runtime (``Worker``) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gridq.errors import JobTimeout, Reject, Retry
from gridq.worker.app import App, Task

if TYPE_CHECKING:
    from gridq.worker.middleware import Middleware
    from gridq.worker.worker import Worker

__all__ = ["App", "JobTimeout", "Middleware", "Reject", "Retry", "Task", "Worker"]


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from gridq.worker.worker import Worker

        return Worker
    if name == "Middleware":
        from gridq.worker.middleware import Middleware

        return Middleware
    raise AttributeError(name)
