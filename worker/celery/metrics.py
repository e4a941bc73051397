"""The Prometheus metrics a Celery worker under gridq exports: the native worker's own.

One dashboard serves native and Celery workers only if both export the same names,
label names and buckets, so the native definitions are reused: a
``gridq.worker.metrics.Metrics`` instance provides the registry, ``gridq_jobs_total``,
``gridq_job_duration_seconds`` (its ``BUCKETS``), ``gridq_jobs_in_flight`` and the
``gridq_worker`` info. Two cases need definitions of our own, with the same names,
labels and buckets: the prefork pool (tasks run in child processes, so values must
go through prometheus_client's multiprocess files, which ``Metrics`` does not use)
and a ``gridq.worker.metrics`` whose API no longer fits (logged).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("gridq.worker.celery")

# prometheus_client's multiprocess mode: set (by the wrapper) before it is first imported.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
COUNTER_LABELS = ("queue", "task", "outcome")
DURATION_LABELS = ("queue", "task")
IN_FLIGHT_LABELS = ("queue",)
# A copy of gridq.worker.metrics.BUCKETS, used only if that module cannot be imported.
FALLBACK_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
)


@dataclass
class MetricSet:
    jobs_total: Any  # Counter(queue, task, outcome)
    duration: Any  # Histogram(queue, task)
    in_flight: Any  # Gauge(queue)
    registry: Any
    source: str  # "gridq.worker.metrics" or "gridq.worker.celery"
    # True: gridq_jobs_in_flight is computed at scrape time (set_function, as the native
    # worker does); False: inc/dec per task (multiprocess mode has no set_function).
    in_flight_by_function: bool


def _buckets() -> tuple[float, ...]:
    try:
        from gridq.worker.metrics import BUCKETS
    except Exception:
        return FALLBACK_BUCKETS
    return tuple(BUCKETS)


def native(queue: str, info: dict[str, str], in_flight: Callable[[], float]) -> MetricSet | None:
    """The native worker's metrics, or None if ``gridq.worker.metrics`` does not fit."""
    try:
        from gridq.worker.metrics import Metrics

        m = Metrics(queue, info, in_flight)
        gauge = m.registry._names_to_collectors["gridq_jobs_in_flight"]
        jobs, duration = m.jobs, m.duration
        if (
            tuple(jobs._labelnames) != COUNTER_LABELS
            or tuple(duration._labelnames) != DURATION_LABELS
            or tuple(gauge._labelnames) != IN_FLIGHT_LABELS
        ):
            raise TypeError("label names differ")
    except Exception as exc:
        log.warning("gridq: gridq.worker.metrics does not fit (%s); using own definitions", exc)
        return None
    return MetricSet(jobs, duration, gauge, m.registry, "gridq.worker.metrics", True)


def own(registry: Any = None) -> MetricSet:
    """Definitions identical to the native ones (names, labels, buckets)."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
    jobs = Counter(
        "gridq_jobs",
        "Job attempts settled, by outcome (ok|retried|failed|dead)",
        COUNTER_LABELS,
        registry=reg,
    )
    duration = Histogram(
        "gridq_job_duration_seconds",
        "Time a handler ran, in seconds",
        DURATION_LABELS,
        buckets=_buckets(),
        registry=reg,
    )
    # livesum: under prefork each child writes its own file; the sum over live
    # children is what "in flight" means.
    gauge = Gauge(
        "gridq_jobs_in_flight",
        "Jobs claimed by this worker and not yet settled",
        IN_FLIGHT_LABELS,
        registry=reg,
        multiprocess_mode="livesum",
    )
    return MetricSet(jobs, duration, gauge, reg, "gridq.worker.celery", False)


def serving_registry(ms: MetricSet) -> Any:
    """What the endpoint serves: every child's files under prefork, else ``ms.registry``."""
    if os.environ.get(MULTIPROC_DIR) and not ms.in_flight_by_function:
        from prometheus_client import CollectorRegistry, multiprocess

        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        return reg
    return ms.registry


class Meters:
    """The metric children one worker updates, cached by label values.

    ``.labels()`` costs a lock and a dict lookup per call; a task touches three
    children, so they are looked up once per (queue, task, outcome) and kept.
    """

    def __init__(self, ms: MetricSet, in_flight: Callable[[str], float]) -> None:
        self.set = ms
        self._in_flight = in_flight
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._durations: dict[tuple[str, str], Any] = {}
        self._gauges: dict[str, Any] = {}

    def count(self, queue: str, task: str, outcome: str) -> None:
        key = (queue, task, outcome)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = self.set.jobs_total.labels(queue, task, outcome)
        child.inc()

    def observe(self, queue: str, task: str, seconds: float) -> None:
        key = (queue, task)
        child = self._durations.get(key)
        if child is None:
            child = self._durations[key] = self.set.duration.labels(queue, task)
        child.observe(seconds)

    def gauge(self, queue: str) -> Any:
        """The in-flight gauge of ``queue`` (created on first use, so it shows 0 at once)."""
        child = self._gauges.get(queue)
        if child is None:
            child = self._gauges[queue] = self.set.in_flight.labels(queue)
            if self.set.in_flight_by_function:
                child.set_function(lambda: self._in_flight(queue))
        return child

    def started(self, queue: str) -> None:
        g = self.gauge(queue)
        if not self.set.in_flight_by_function:
            g.inc()

    def stopped(self, queue: str) -> None:
        if not self.set.in_flight_by_function:
            self.gauge(queue).dec()
