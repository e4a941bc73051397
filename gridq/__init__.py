"""gridq: a Redis-backed task grid."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridq.queue import Queue

__version__ = "0.1.0"
__all__ = ["Queue", "__version__"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: every gridq module imports this package first, and a handler
    # module's `from gridq.worker import App` must not pull in the Redis client.
    if name == "Queue":
        from gridq.queue import Queue

        return Queue
    raise AttributeError(f"module 'gridq' has no attribute {name!r}")
