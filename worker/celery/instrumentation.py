"""What ``install()`` connects to a Celery app's signals: metrics, stats, limits, checks.

Every handler is safe under the threads pool (the default here, so a task may start
its own processes). Task signals run in the thread that runs the task; the outcome of
one execution is recorded exactly once even when several signals (or the time-limit
watchdog) report it, which ``lock`` orders.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gridq.errors import EXIT_CONFIG
from gridq.redisurl import mask
from gridq.worker.celery import metrics
from gridq.worker.celery.checks import POOLS_WITHOUT_TIME_LIMITS, Finding, pool_name, run_checks
from gridq.worker.celery.forks import reset_signals_in_forked_children
from gridq.worker.celery.limits import Running, Watchdog
from gridq.worker.celery.metrics import Meters
from gridq.worker.celery.settings import CelerySettings
from gridq.worker.celery.stats import Flusher, StatsBuffer

log = logging.getLogger("gridq.worker.celery")


@dataclass(eq=False)
class Instrumentation:
    """One per app and process; ``install()`` builds it and connects its ``on_*`` methods."""

    app: Any
    settings: CelerySettings
    stats_url: str | None  # where gridq:q:{queue}:stats go (None: nowhere)
    pool: str = "unknown"
    findings: list[Finding] = field(default_factory=list)
    meters: Meters | None = None
    stats: StatsBuffer = field(default_factory=StatsBuffer)
    flusher: Flusher | None = None
    watchdog: Watchdog | None = None
    metrics_server: Any = None
    # Orders a task's completion against the watchdog's deadline actions.
    lock: threading.Lock = field(default_factory=threading.Lock)
    _running: dict[tuple[str, int], Running] = field(default_factory=dict)
    _queue_by_key: dict[str, str] = field(default_factory=dict)

    # -- metrics --

    def in_flight(self, queue: str) -> float:
        """Tasks of ``queue`` running now in this process (read at scrape time)."""
        for _ in range(3):
            try:
                # list() copies the values under the GIL; retry if a task thread
                # resized the dict in between.
                running = list(self._running.values())
                break
            except RuntimeError:
                continue
        else:
            return 0.0
        return float(sum(1 for e in running if e.in_flight and e.queue == queue))

    def _meters(
        self, queues: list[str] | None = None, info: dict[str, str] | None = None
    ) -> Meters:
        if self.meters is None:
            ms: metrics.MetricSet | None = None
            if self.pool != "prefork":
                first = (queues or [self._default_queue()])[0]
                ms = metrics.native(first, info or {}, lambda: self.in_flight(first))
            self.meters = Meters(ms or metrics.own(), self.in_flight)
        return self.meters

    # -- helpers --

    def _default_queue(self) -> str:
        return str(self.app.conf.task_default_queue or "celery")

    def _queue_of(self, request: Any, task: Any = None) -> str:
        info = getattr(request, "delivery_info", None) or {}
        key = info.get("routing_key") or info.get("exchange") or ""
        if key:
            q = self._queue_by_key.get(key)
            if q is None:
                q = self._queue_by_key[key] = self._queue_for_key(key)
            return q
        default = getattr(task, "queue", None) if task is not None else None
        return str(default or self._default_queue())

    def _queue_for_key(self, key: str) -> str:
        try:
            for queue in self.app.amqp.queues.values():
                if queue.routing_key == key or queue.name == key:
                    return str(queue.name)
        except Exception:
            pass
        return key

    def _record(self, queue: str, task: str, outcome: str) -> None:
        self._meters().count(queue, task, outcome)
        self.stats.add(queue, outcome)

    def _outcome(self, sender: Any, task_id: str | None, outcome: str) -> None:
        """Record one outcome; once per execution even if several signals report it."""
        entry = self._running.get((task_id or "", threading.get_ident()))
        if entry is not None:
            with self.lock:
                entry.finished = True
                counted, entry.counted = entry.counted, True
            if not counted:
                self._record(entry.queue, entry.task, outcome)
            return
        # No prerun in this thread: a prefork parent reporting a child's hard time limit
        # or its death, or a retry announced by the consumer.
        name = getattr(sender, "name", None) or "unknown"
        self._record(self._queue_of(getattr(sender, "request", None), sender), name, outcome)

    def _hard_deadline(self, entry: Running, limit: float) -> None:
        # Called by the watchdog with self.lock held.
        if not entry.counted:
            entry.counted = True
            self._record(entry.queue, entry.task, "failed")
        if entry.in_flight:
            entry.in_flight = False
            self._meters().stopped(entry.queue)

    # -- task signals (run in the thread that runs the task) --

    def on_prerun(
        self, sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any
    ) -> None:
        task = task or sender
        request = task.request
        entry = Running(
            task_id=task_id or "",
            task=task.name,
            queue=self._queue_of(request, task),
            thread_id=threading.get_ident(),
            started=time.monotonic(),
        )
        self._running[(entry.task_id, entry.thread_id)] = entry
        self._meters().started(entry.queue)
        if self.watchdog is not None:
            limits = getattr(request, "timelimit", None) or (None, None)
            hard = limits[0] or task.time_limit
            soft = limits[1] or task.soft_time_limit
            if hard or soft:
                self.watchdog.arm(entry, soft, hard)

    def on_postrun(
        self, sender: Any = None, task_id: str | None = None, state: str | None = None, **_: Any
    ) -> None:
        entry = self._running.pop((task_id or "", threading.get_ident()), None)
        if entry is None:
            return
        with self.lock:
            entry.finished = True
            counted, entry.counted = entry.counted, True
            in_flight, entry.in_flight = entry.in_flight, False
        # States without an outcome signal: REJECTED (the task raised Reject) counts as
        # failed, as Reject does natively; IGNORED is not counted (the task chose to
        # leave no trace).
        if not counted and state == "REJECTED":
            self._record(entry.queue, entry.task, "failed")
        meters = self._meters()
        meters.observe(entry.queue, entry.task, time.monotonic() - entry.started)
        if in_flight:
            meters.stopped(entry.queue)

    def on_success(self, sender: Any = None, **_: Any) -> None:
        request = getattr(sender, "request", None)
        self._outcome(sender, getattr(request, "id", None), "ok")

    def on_failure(self, sender: Any = None, task_id: str | None = None, **_: Any) -> None:
        self._outcome(sender, task_id, "failed")

    def on_retry(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        self._outcome(sender, getattr(request, "id", None), "retried")

    # -- consumer signals (main thread): messages that never become a task run --

    def on_unknown(
        self, sender: Any = None, name: str | None = None, message: Any = None, **_: Any
    ) -> None:
        self._record(self._queue_of(message), name or "unknown", "dead")

    def on_rejected(self, sender: Any = None, message: Any = None, **_: Any) -> None:
        self._record(self._queue_of(message), "unknown", "dead")

    # -- worker life cycle --

    def on_worker_init(self, sender: Any = None, **_: Any) -> None:
        """Main process, before the pool starts: checks, metrics endpoint, flusher."""
        self.pool = pool_name(getattr(sender, "pool_cls", None))
        self._check_or_refuse()
        queues = self._consumed_queues(sender)
        meters = self._meters(queues, self._info(sender, queues))
        for q in queues:
            meters.gauge(q)  # in flight = 0 is shown before the first task, as natively
        self._serve_metrics(meters.set)
        if self.pool in POOLS_WITHOUT_TIME_LIMITS and self.settings.enforce_time_limits:
            self.watchdog = Watchdog(self._hard_deadline, self.lock)
        if self.pool != "prefork":
            # Under prefork the tasks run in children: each starts its own flusher.
            self._start_flusher()
        if self.pool in ("threads", "solo"):
            reset_signals_in_forked_children()

    def _check_or_refuse(self) -> None:
        """Run the start-up checks; under ``strict``, an error stops the worker (exit 3)."""
        mode = self.settings.celery_checks
        if mode == "off":
            return
        self.findings = run_checks(
            self.app, self.pool, enforce_time_limits=self.settings.enforce_time_limits
        )
        errors = [f for f in self.findings if f.level == "error"]
        if errors and mode == "strict":
            for f in errors:
                print(f"gridq: error: {f.line()}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_CONFIG)

    def _info(self, worker: Any, queues: list[str]) -> dict[str, str]:
        """The labels of gridq_worker_info, as the native worker's."""
        s = self.settings
        return {
            "queue": ",".join(queues),
            "task_name": s.task_name,
            "node_id": s.node_id,
            "instance_id": str(getattr(worker, "hostname", "") or s.instance_id),
            "pool": self.pool,
            "concurrency": str(getattr(worker, "concurrency", "")),
            "version": _version(),
            "kind": "celery",
        }

    def _serve_metrics(self, ms: metrics.MetricSet) -> None:
        if not self.settings.metrics_port:
            return
        from prometheus_client import start_http_server

        self.metrics_server = start_http_server(
            self.settings.metrics_port,
            addr=self.settings.metrics_host,
            registry=metrics.serving_registry(ms),
        )

    def _consumed_queues(self, worker: Any) -> list[str]:
        try:
            names = list(worker.app.amqp.queues.consume_from)
        except Exception:
            names = []
        return names or [self._default_queue()]

    def _start_flusher(self) -> None:
        if self.stats_url and self.flusher is None:
            try:
                self.flusher = Flusher(self.stats_url, self.stats)
            except Exception as exc:
                log.warning("gridq: queue stats disabled: %s", exc)
                return
            self.flusher.start()
            atexit.register(self.flusher.stop)

    def on_after_setup(self, sender: Any = None, **_: Any) -> None:
        """Logging is configured by now: report the checks in the worker's log."""
        for f in self.findings:
            level = {"error": logging.ERROR, "warning": logging.WARNING}.get(f.level, logging.INFO)
            log.log(level, f.line())
        if (
            self.pool == "prefork"
            and self.settings.metrics_port
            and not os.environ.get(metrics.MULTIPROC_DIR)
        ):
            log.warning(
                "gridq: prefork pool without PROMETHEUS_MULTIPROC_DIR: tasks run in child "
                "processes whose metrics the endpoint cannot see; start the worker with "
                "python -m gridq.worker.celery, which sets it"
            )

    def on_worker_ready(self, sender: Any = None, **_: Any) -> None:
        log.info(
            "gridq: Celery instrumentation on (pool %s, metrics %s, queue stats %s)",
            self.pool,
            f":{self.settings.metrics_port}" if self.settings.metrics_port else "off",
            mask(self.stats_url) if self.flusher else "off",
        )

    def on_process_init(self, **_: Any) -> None:
        """A prefork child: threads and locks do not survive fork, start afresh."""
        self.stats = StatsBuffer()
        self.lock = threading.Lock()
        self.flusher = None
        self._running = {}
        self._start_flusher()

    def on_process_shutdown(self, pid: int | None = None, **_: Any) -> None:
        if self.flusher is not None:
            self.flusher.stop()
        if os.environ.get(metrics.MULTIPROC_DIR):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid or os.getpid())

    def on_worker_shutdown(self, **_: Any) -> None:
        if self.flusher is not None:
            self.flusher.stop()


def _version() -> str:
    from gridq import __version__

    try:
        import celery

        return f"{__version__} celery/{celery.__version__}"
    except Exception:
        return __version__
