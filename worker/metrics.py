"""Prometheus metrics and the liveness endpoint.

One small HTTP server (stdlib, a thread) serves ``/metrics`` (Prometheus text) and
``/health`` (200 while the worker's lease heartbeat is fresh, 503 otherwise), on
``GRIDQ_METRICS_PORT``. Metrics live in a per-worker registry so that several workers
in one process (tests, embedding) never collide.

Outcomes, one per settled attempt: ``ok`` (succeeded), ``retried`` (failed, runs
again later), ``failed`` (failed for good: retries exhausted or ``Reject``; the job
is in the dead-letter queue), ``dead`` (could not run at all: malformed envelope,
unknown task, no default handler; dead-lettered). Throughput is
``rate(gridq_jobs_total{outcome="ok"}[1m])``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from gridq.worker.middleware import Middleware

if TYPE_CHECKING:
    from gridq.protocol import Job

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class Metrics(Middleware):
    def __init__(self, queue: str, info: dict[str, str], in_flight: Callable[[], float]) -> None:
        self.queue = queue
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Counter(
            "gridq_jobs",
            "Job attempts settled, by outcome (ok|retried|failed|dead)",
            ["queue", "task", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "gridq_job_duration_seconds",
            "Time a handler ran, in seconds",
            ["queue", "task"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        g = Gauge(
            "gridq_jobs_in_flight",
            "Jobs claimed by this worker and not yet settled",
            ["queue"],
            registry=self.registry,
        )
        g.labels(queue).set_function(in_flight)
        Info("gridq_worker", "This worker", registry=self.registry).info(info)
        # labels() costs a lock and a dict lookup per call; these caches make the hot
        # path (one settling thread) a plain dict hit.
        self._count: dict[tuple[str, str], Any] = {}
        self._hist: dict[str, Any] = {}

    def _inc(self, task: str, outcome: str, duration: float) -> None:
        key = (task, outcome)
        c = self._count.get(key)
        if c is None:
            c = self._count[key] = self.jobs.labels(self.queue, task, outcome)
        c.inc()
        if duration > 0:
            h = self._hist.get(task)
            if h is None:
                h = self._hist[task] = self.duration.labels(self.queue, task)
            h.observe(duration)

    def on_ok(self, job: Job, task: str, duration: float) -> None:
        self._inc(task, "ok", duration)

    def on_retry(self, job: Job, task: str, delay: float, duration: float) -> None:
        self._inc(task, "retried", duration)

    def on_failed(self, job: Job, task: str, reason: str, duration: float) -> None:
        self._inc(task, "failed", duration)

    def on_dead(self, job: Job | None, task: str, reason: str) -> None:
        self._inc(task, "dead", 0.0)
