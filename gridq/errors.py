"""The error tree. Each error carries its retry decision, so callers never guess.

Handlers raise ``Retry(delay)`` to ask for another attempt later and ``Reject`` to
send a job to the dead-letter queue at once. Any other exception is retried with the
task's backoff until its retries run out. Redis problems are split into those worth
waiting out (``RedisUnavailable``) and those a retry cannot fix (``RedisAuthError``).
"""

from __future__ import annotations


class GridqError(Exception):
    """Base of every error gridq raises on purpose."""


class PermanentError(GridqError):
    """Retrying will not help."""


class TemporaryError(GridqError):
    """Worth trying again, after ``delay`` seconds if given."""

    def __init__(self, message: str = "", delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class Retry(TemporaryError):
    """Raised by a handler: run this job again after ``delay`` seconds (default: backoff)."""


class Reject(PermanentError):
    """Raised by a handler: do not retry; dead-letter the job with this message."""


class JobTimeout(TemporaryError):
    """The job ran past its deadline."""


class ConfigError(PermanentError):
    """Configuration is invalid; raised at start-up, never later."""


class RedisAuthError(PermanentError):
    """Redis rejected the credentials (NOAUTH, WRONGPASS, or a password Redis does not expect)."""


class RedisUnavailable(TemporaryError):
    """Redis could not be reached (refused, unresolvable host, timeout, TLS failure)."""


# Exit codes a worker uses, so that the node can tell the user what went wrong.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 3
EXIT_REDIS_AUTH = 77
EXIT_REDIS_UNAVAILABLE = 78
