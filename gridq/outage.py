"""Log an outage once when it starts and once when it ends, never once per retry.

The worker (its Redis), the node (its hub), the hub (its Redis) and the Celery adapter
(its stats Redis) all retry through outages; without this, a minute-long outage prints
hundreds of identical lines and hides the one that says when it ended.
"""

from __future__ import annotations

import logging
import threading
import time

from gridq.redisurl import mask_text


class OutageLog:
    """``down(message)`` on each failure, ``up()`` on each success; thread-safe.

    Messages are masked (no password reaches a log line). ``down_since`` is monotonic
    time while an outage lasts, else None; ``outages`` and ``recoveries`` count them.
    """

    def __init__(
        self,
        log: logging.Logger,
        *,
        down_level: int = logging.WARNING,
        up_level: int = logging.WARNING,
        up_message: str = "reachable again after %.1f s",
    ) -> None:
        self._log = log
        self._down_level = down_level
        self._up_level = up_level
        self._up_message = up_message
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.outages = 0
        self.recoveries = 0

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def down(self, message: str) -> bool:
        """Note a failure; log ``message`` and return True only for an outage's first."""
        with self._lock:
            if self.down_since is not None:
                return False
            self.down_since = time.monotonic()
            self.outages += 1
        self._log.log(self._down_level, "%s", mask_text(message))
        return True

    def waited(self) -> float:
        """Seconds since the outage began (0 when up)."""
        since = self.down_since
        return 0.0 if since is None else time.monotonic() - since

    def up(self) -> float | None:
        """Note a success; end the outage, if any, logging its length (returned)."""
        if self.down_since is None:  # lock-free fast path: the hot case
            return None
        with self._lock:
            since = self.down_since
            if since is None:
                return None
            self.down_since = None
            self.recoveries += 1
        took = time.monotonic() - since
        self._log.log(self._up_level, self._up_message, took)
        return took
