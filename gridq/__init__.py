"""gridq: a Redis-backed task grid."""

from gridq.queue import Queue

__version__ = "0.1.0"
__all__ = ["Queue", "__version__"]
