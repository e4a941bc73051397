"""Task time limits under Celery's threads and solo pools, which ignore them.

Part of gridq.worker.celery: ``Watchdog`` raises ``SoftTimeLimitExceeded``
and ``TimeLimitExceeded`` inside the task's thread at its deadlines. Importing this
module does not import Celery; the watchdog does when a deadline fires.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gridq.worker.threads import raise_in_thread

log = logging.getLogger("gridq.worker.celery")

# After the hard deadline, how long a thread may take to unwind TimeLimitExceeded
# before we say it is stuck in C code.
STUCK_GRACE = 2.0


# --- per-task state -------------------------------------------------------------------


@dataclass(eq=False)
class Running:
    """One task execution in one thread, from task_prerun to task_postrun."""

    task_id: str
    task: str
    queue: str
    thread_id: int
    started: float
    counted: bool = False  # outcome recorded (by a signal or by the hard deadline)
    finished: bool = False  # the task's code returned; no more async exceptions
    in_flight: bool = True  # still counted in gridq_jobs_in_flight
    timed_out: bool = False


# --- time limits under the threads pool -----------------------------------------------


class Watchdog:
    """One thread and a heap of deadlines for every running task that has a time limit.

    Celery's threads and solo pools ignore ``soft_time_limit``/``time_limit``. Here:
    at the soft deadline ``SoftTimeLimitExceeded`` is raised inside the task's thread
    (as prefork does in its child), so the task can clean up; at the hard deadline
    ``TimeLimitExceeded`` is raised there, and the job is counted ``failed`` at that
    moment whatever the thread does next. A thread stuck in C code keeps running
    (nothing can kill a thread) and keeps its pool slot: that is logged as an error.
    """

    def __init__(
        self, on_hard: Callable[[Running, float], None], lock: threading.Lock | None = None
    ) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, str, Running, float]] = []
        self._seq = itertools.count()
        self._on_hard = on_hard
        # Orders deadline actions against task completion (the caller's settle lock).
        self.lock = lock or threading.Lock()
        self._thread = threading.Thread(target=self._run, name="gridq-time-limits", daemon=True)
        self._thread.start()

    def arm(self, entry: Running, soft: float | None, hard: float | None) -> None:
        with self._cond:
            if soft:
                heapq.heappush(
                    self._heap, (entry.started + soft, next(self._seq), "soft", entry, soft)
                )
            if hard:
                heapq.heappush(
                    self._heap, (entry.started + hard, next(self._seq), "hard", entry, hard)
                )
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                due, _, kind, entry, limit = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            try:
                self._fire(kind, entry, limit)
            except Exception:  # the watchdog must outlive any one task
                log.exception("gridq: time-limit watchdog error")

    def _fire(self, kind: str, entry: Running, limit: float) -> None:
        from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

        with self.lock:
            if entry.finished:
                return
            if kind == "soft":
                raise_in_thread(entry.thread_id, SoftTimeLimitExceeded)
                log.warning(
                    "gridq: task %s[%s] exceeded its soft time limit (%gs): "
                    "SoftTimeLimitExceeded raised in its thread",
                    entry.task,
                    entry.task_id,
                    limit,
                )
            elif kind == "hard":
                raise_in_thread(entry.thread_id, TimeLimitExceeded)
                entry.timed_out = True
                self._on_hard(entry, limit)
                log.error(
                    "gridq: task %s[%s] exceeded its hard time limit (%gs): counted failed, "
                    "TimeLimitExceeded raised in its thread",
                    entry.task,
                    entry.task_id,
                    limit,
                )
                with self._cond:
                    heapq.heappush(
                        self._heap,
                        (time.monotonic() + STUCK_GRACE, next(self._seq), "stuck", entry, limit),
                    )
            else:
                log.error(
                    "gridq: task %s[%s] still occupies its thread %.0fs after its hard time "
                    "limit: it is blocked in C code, which Python cannot interrupt; the pool "
                    "slot stays busy until that call returns (restart the worker, or use "
                    "--pool prefork for tasks that must be killed)",
                    entry.task,
                    entry.task_id,
                    STUCK_GRACE,
                )
