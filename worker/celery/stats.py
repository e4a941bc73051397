"""The hub's counters, ``gridq:q:{queue}:stats``, written for a Celery worker.

Outcomes are buffered in memory and added to Redis by a background flusher every
``FLUSH_INTERVAL`` seconds (one pipelined round trip), so a task costs no Redis call.
While Redis is down the counts are kept and go out with the first flush that works;
the outage is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import logging
import threading

from gridq.keys import QueueKeys
from gridq.outage import OutageLog
from gridq.redisurl import client, mask

log = logging.getLogger("gridq.worker.celery")

FLUSH_INTERVAL = 0.5

# outcome -> stats hash fields it increments, as the native worker's settle script
# does (worker/broker.py): "processed" counts successes, "failed" jobs failed for good.
STAT_FIELDS: dict[str, tuple[str, ...]] = {
    "ok": ("processed",),
    "failed": ("failed",),
    "retried": ("retried",),
    "dead": ("dead",),
}

Counts = dict[tuple[str, str], int]  # (queue, field) -> increment


class StatsBuffer:
    """Counters waiting to be added to gridq:q:{queue}:stats; a flusher drains them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counts = {}

    def add(self, queue: str, outcome: str) -> None:
        with self._lock:
            for f in STAT_FIELDS[outcome]:
                key = (queue, f)
                self._counts[key] = self._counts.get(key, 0) + 1

    def take(self) -> Counts:
        with self._lock:
            out, self._counts = self._counts, {}
        return out

    def give_back(self, counts: Counts) -> None:
        with self._lock:
            for k, n in counts.items():
                self._counts[k] = self._counts.get(k, 0) + n


class Flusher:
    """Background thread: HINCRBY the buffered counters every ``interval`` seconds."""

    def __init__(self, url: str, buffer: StatsBuffer, interval: float = FLUSH_INTERVAL) -> None:
        self.url_masked = mask(url)
        self.conn = client(url, timeout=2.0)
        self.buffer = buffer
        self.interval = interval
        where = self.url_masked.replace("%", "%%")
        self.outage = OutageLog(
            log, up_message=f"gridq: queue stats written to {where} again after %.1f s"
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gridq-stats-flusher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self) -> None:
        counts = self.buffer.take()
        if not counts:
            return
        try:
            pipe = self.conn.pipeline(transaction=False)
            for (queue, f), n in counts.items():
                pipe.hincrby(QueueKeys(queue).stats, f, n)
            pipe.execute()
        except Exception as exc:
            # Keep the counts: they go out with the next flush once Redis is back.
            self.buffer.give_back(counts)
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.outage.down(
                f"gridq: cannot write queue stats to {self.url_masked} ({why}); will retry"
            )
            return
        self.outage.up()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self.flush()
