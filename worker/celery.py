"""Run an existing Celery app under gridq: native metrics, queue counters, start-up checks.

Two ways in:

- in the user's Celery module: ``from gridq.worker.celery import install; install(app)``,
  then ``celery -A proj worker --pool threads`` as usual;
- with no code change (what the node runs for a task of kind ``celery``)::

      python -m gridq.worker.celery -A proj.celery:app worker -Q q1,q2 --pool threads -c 8 --hostname INSTANCE_ID

  or ``gridq celery ...``, the same. That command line lives in celery_cli.py
  (``main``, ``build_argv``; still importable from here). The broker URL comes only
  from the environment (``CELERY_BROKER_URL``, else ``INPUT_REDIS_URL``), never from
  the command line, where ``ps`` would show it.

What the instrumentation does, all from Celery signals, all safe under the threads
pool (the default here, so a task may start its own processes):

- exports ``gridq_jobs_total{queue,task,outcome}``, ``gridq_job_duration_seconds`` and
  ``gridq_jobs_in_flight`` -- the native worker's metrics -- on ``GRIDQ_METRICS_PORT``;
- adds the same outcomes to ``gridq:q:{queue}:stats`` (processed, failed, retried,
  dead) in Redis, batched by a background flusher every 0.5 s so a task costs no
  Redis round trip;
- enforces task time limits under the threads and solo pools, where Celery silently
  ignores them (see ``_Watchdog`` in celery_limits.py);
- refuses to start, or warns, on the configuration traps listed in celery_checks.py.

Importing this module does not import Celery (``celery_queue_depth`` needs none);
Celery is imported by ``install()`` and ``celery_cli.main()`` only.
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

from gridq.keys import QueueKeys
from gridq.worker import celery_metrics
from gridq.worker.celery_checks import (
    POOLS_WITHOUT_TIME_LIMITS,
    Finding,
    pool_name,
    run_checks,
)
from gridq.worker.celery_depth import (
    CeleryDepth,
    celery_queue_depth,
    celery_queue_depth_detail,
)
from gridq.worker.celery_limits import _Running, _Watchdog
from gridq.worker.celery_metrics import MetricSet, serving_registry

__all__ = [
    "CeleryDepth",
    "Instrumentation",
    "celery_queue_depth",
    "celery_queue_depth_detail",
    "install",
]

log = logging.getLogger("gridq.worker.celery")

EXIT_CONFIG = 3  # gridq.errors.EXIT_CONFIG; the node reports it as a configuration error
FLUSH_INTERVAL = 0.5

# outcome -> stats hash fields it increments, as the native worker's settle script
# does (worker/broker.py): "processed" counts successes, "failed" jobs failed for good.
_STAT_FIELDS: dict[str, tuple[str, ...]] = {
    "ok": ("processed",),
    "failed": ("failed",),
    "retried": ("retried",),
    "dead": ("dead",),
}


# --- batched stats --------------------------------------------------------------------


class _StatsBuffer:
    """Counters waiting to be added to gridq:q:{queue}:stats; a flusher drains them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, queue: str, fields: tuple[str, ...]) -> None:
        with self._lock:
            for f in fields:
                key = (queue, f)
                self._counts[key] = self._counts.get(key, 0) + 1

    def take(self) -> dict[tuple[str, str], int]:
        with self._lock:
            out, self._counts = self._counts, {}
        return out

    def give_back(self, counts: dict[tuple[str, str], int]) -> None:
        with self._lock:
            for k, n in counts.items():
                self._counts[k] = self._counts.get(k, 0) + n


class _Flusher:
    """Background thread: HINCRBY the buffered counters every ``interval`` seconds."""

    def __init__(self, url: str, buffer: _StatsBuffer, interval: float = FLUSH_INTERVAL) -> None:
        from gridq.redisurl import client, mask

        self.url_masked = mask(url)
        self.conn = client(url, timeout=2.0)
        self.buffer = buffer
        self.interval = interval
        self._stop = threading.Event()
        self._failing = False
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
            if not self._failing:
                from gridq.redisurl import mask_text

                log.warning(
                    "gridq: cannot write queue stats to %s (%s); will retry",
                    self.url_masked,
                    mask_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__),
                )
            self._failing = True
            return
        if self._failing:
            log.warning("gridq: queue stats written to %s again", self.url_masked)
        self._failing = False

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self.flush()


# --- processes a task forks -----------------------------------------------------------

_at_fork_registered = threading.Event()


def _default_signals_in_child() -> None:
    """Give a process forked by a task (multiprocessing.Pool) default signal handlers.

    The Celery worker's SIGTERM handler only sets a "stop soon" flag. A child forked
    from a task thread inherits it, so ``Pool.terminate()`` (what ``with Pool():``
    does on exit) sends SIGTERM to children that do not die, then joins them
    forever: the task hangs. Billiard resets handlers in its own prefork children;
    forks from task code under the threads pool get the defaults back here.
    """
    import signal

    for name in ("SIGTERM", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (ValueError, OSError):
                pass
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except (ValueError, OSError):
        pass


# --- the instrumentation --------------------------------------------------------------


@dataclass
class _Config:
    metrics_port: int | None
    metrics_host: str
    stats_url: str | None
    checks: str  # strict | warn | off
    enforce_time_limits: bool


def _env_config(app: Any) -> _Config:
    port_s = os.environ.get("GRIDQ_METRICS_PORT", "").strip()
    port = int(port_s) if port_s.isdigit() and int(port_s) > 0 else None
    stats_url = os.environ.get("GRIDQ_CELERY_STATS_URL") or os.environ.get("INPUT_REDIS_URL")
    if not stats_url:
        broker = app.conf.broker_url
        if isinstance(broker, list | tuple):
            broker = broker[0] if broker else None
        if isinstance(broker, str):
            broker = broker.split(";", 1)[0].strip()
            if broker.split("://", 1)[0] in ("redis", "rediss", "unix"):
                stats_url = broker
    checks = os.environ.get("GRIDQ_CELERY_CHECKS", "strict").strip().lower() or "strict"
    tl = os.environ.get("GRIDQ_CELERY_TIME_LIMITS", "enforce").strip().lower()
    return _Config(
        metrics_port=port,
        metrics_host=os.environ.get("GRIDQ_METRICS_HOST", "0.0.0.0"),
        stats_url=stats_url or None,
        checks=checks if checks in ("strict", "warn", "off") else "strict",
        enforce_time_limits=tl not in ("off", "0", "false", "no"),
    )


@dataclass(eq=False)
class Instrumentation:
    """What ``install()`` connects to a Celery app's signals. One per app and process."""

    app: Any
    config: _Config
    pool: str = "unknown"
    findings: list[Finding] = field(default_factory=list)
    metrics: MetricSet | None = None
    metrics_by_function: bool = False
    stats: _StatsBuffer = field(default_factory=_StatsBuffer)
    flusher: _Flusher | None = None
    watchdog: _Watchdog | None = None
    metrics_server: Any = None
    _running: dict[tuple[str, int], _Running] = field(default_factory=dict)
    _counters: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    _durations: dict[tuple[str, str], Any] = field(default_factory=dict)
    _gauges: dict[str, Any] = field(default_factory=dict)
    _queue_by_key: dict[str, str] = field(default_factory=dict)

    # -- metric children, cached: .labels() costs a lock and a dict lookup per call --

    def _counter(self, queue: str, task: str, outcome: str) -> Any:
        key = (queue, task, outcome)
        child = self._counters.get(key)
        if child is None:
            child = self._metric_set().jobs_total.labels(queue, task, outcome)
            self._counters[key] = child
        return child

    def _duration(self, queue: str, task: str) -> Any:
        key = (queue, task)
        child = self._durations.get(key)
        if child is None:
            child = self._metric_set().duration.labels(queue, task)
            self._durations[key] = child
        return child

    def _gauge(self, queue: str) -> Any:
        child = self._gauges.get(queue)
        if child is None:
            ms = self._metric_set()
            child = ms.in_flight.labels(queue)
            if ms.in_flight_by_function:
                child.set_function(lambda: self.in_flight(queue))
            self._gauges[queue] = child
        return child

    def _inflight_inc(self, queue: str) -> None:
        g = self._gauge(queue)
        if not self.metrics_by_function:
            g.inc()

    def _inflight_dec(self, queue: str) -> None:
        if not self.metrics_by_function:
            self._gauge(queue).dec()

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

    def _metric_set(
        self, queues: list[str] | None = None, info: dict[str, str] | None = None
    ) -> MetricSet:
        if self.metrics is None:
            ms: MetricSet | None = None
            if self.pool != "prefork":
                first = (queues or [str(self.app.conf.task_default_queue or "celery")])[0]
                ms = celery_metrics.native(first, info or {}, lambda: self.in_flight(first))
            self.metrics = ms or celery_metrics.own()
            self.metrics_by_function = self.metrics.in_flight_by_function
        return self.metrics

    # -- helpers --

    def _queue_of(self, request: Any, task: Any = None) -> str:
        info = getattr(request, "delivery_info", None) or {}
        key = info.get("routing_key") or info.get("exchange") or ""
        if key:
            q = self._queue_by_key.get(key)
            if q is None:
                q = key
                try:
                    for queue in self.app.amqp.queues.values():
                        if queue.routing_key == key or queue.name == key:
                            q = queue.name
                            break
                except Exception:
                    pass
                self._queue_by_key[key] = q
            return q
        default = getattr(task, "queue", None) if task is not None else None
        return str(default or self.app.conf.task_default_queue or "celery")

    def _record(self, queue: str, task: str, outcome: str) -> None:
        self._counter(queue, task, outcome).inc()
        self.stats.add(queue, _STAT_FIELDS[outcome])

    def _outcome(self, sender: Any, task_id: str | None, outcome: str) -> None:
        """Record one outcome; once per execution even if several signals report it."""
        entry = self._running.get((task_id or "", threading.get_ident()))
        if entry is not None:
            if self.watchdog is not None:
                with self.watchdog.lock:
                    entry.finished = True
                    if entry.counted:
                        return
                    entry.counted = True
            else:
                entry.finished = True
                if entry.counted:
                    return
                entry.counted = True
            self._record(entry.queue, entry.task, outcome)
            return
        # No prerun in this thread: a prefork parent reporting a child's hard time limit
        # or its death, or a retry announced by the consumer.
        name = getattr(sender, "name", None) or "unknown"
        self._record(self._queue_of(getattr(sender, "request", None), sender), name, outcome)

    def _hard_deadline(self, entry: _Running, limit: float) -> None:
        # Called by the watchdog with its lock held.
        if not entry.counted:
            entry.counted = True
            self._record(entry.queue, entry.task, "failed")
        if entry.in_flight:
            entry.in_flight = False
            self._inflight_dec(entry.queue)

    # -- task signals (run in the thread that runs the task) --

    def on_prerun(
        self, sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any
    ) -> None:
        task = task or sender
        request = task.request
        entry = _Running(
            task_id=task_id or "",
            task=task.name,
            queue=self._queue_of(request, task),
            thread_id=threading.get_ident(),
            started=time.monotonic(),
        )
        self._running[(entry.task_id, entry.thread_id)] = entry
        self._inflight_inc(entry.queue)
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
        if self.watchdog is not None:
            with self.watchdog.lock:
                entry.finished = True
                counted, entry.counted = entry.counted, True
                in_flight, entry.in_flight = entry.in_flight, False
        else:
            counted, entry.counted = entry.counted, True
            in_flight, entry.in_flight = entry.in_flight, False
        # States without an outcome signal: REJECTED (the task raised Reject) counts as
        # failed, as Reject does natively; IGNORED is not counted (the task chose to
        # leave no trace).
        if not counted and state == "REJECTED":
            self._record(entry.queue, entry.task, "failed")
        self._duration(entry.queue, entry.task).observe(time.monotonic() - entry.started)
        if in_flight:
            self._inflight_dec(entry.queue)

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
        if self.config.checks != "off":
            self.findings = run_checks(
                self.app, self.pool, enforce_time_limits=self.config.enforce_time_limits
            )
            errors = [f for f in self.findings if f.level == "error"]
            if errors and self.config.checks == "strict":
                for f in errors:
                    print(f"gridq: error: {f.line()}", file=sys.stderr, flush=True)
                raise SystemExit(EXIT_CONFIG)
        queues = self._consumed_queues(sender)
        info = {
            "queue": ",".join(queues),
            "task_name": os.environ.get("TASK_NAME", ""),
            "node_id": os.environ.get("NODE_ID", ""),
            "instance_id": str(
                getattr(sender, "hostname", "") or os.environ.get("INSTANCE_ID", "")
            ),
            "pool": self.pool,
            "concurrency": str(getattr(sender, "concurrency", "")),
            "version": _version(),
            "kind": "celery",
        }
        ms = self._metric_set(queues, info)
        for q in queues:
            self._gauge(q)  # in flight = 0 is shown before the first task, as natively
        if self.config.metrics_port:
            from prometheus_client import start_http_server

            self.metrics_server = start_http_server(
                self.config.metrics_port,
                addr=self.config.metrics_host,
                registry=serving_registry(ms),
            )
        if self.pool in POOLS_WITHOUT_TIME_LIMITS and self.config.enforce_time_limits:
            self.watchdog = _Watchdog(self._hard_deadline)
        if self.pool != "prefork":
            # Under prefork the tasks run in children: each starts its own flusher.
            self._start_flusher()
        if self.pool in ("threads", "solo") and not _at_fork_registered.is_set():
            _at_fork_registered.set()
            os.register_at_fork(after_in_child=_default_signals_in_child)

    def _consumed_queues(self, worker: Any) -> list[str]:
        try:
            names = list(worker.app.amqp.queues.consume_from)
        except Exception:
            names = []
        return names or [str(self.app.conf.task_default_queue or "celery")]

    def _start_flusher(self) -> None:
        if self.config.stats_url and self.flusher is None:
            try:
                self.flusher = _Flusher(self.config.stats_url, self.stats)
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
            and self.config.metrics_port
            and not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        ):
            log.warning(
                "gridq: prefork pool without PROMETHEUS_MULTIPROC_DIR: tasks run in child "
                "processes whose metrics the endpoint cannot see; start the worker with "
                "python -m gridq.worker.celery, which sets it"
            )

    def on_worker_ready(self, sender: Any = None, **_: Any) -> None:
        from gridq.redisurl import mask

        log.info(
            "gridq: Celery instrumentation on (pool %s, metrics %s, queue stats %s)",
            self.pool,
            f":{self.config.metrics_port}" if self.config.metrics_port else "off",
            mask(self.config.stats_url) if self.flusher else "off",
        )

    def on_process_init(self, **_: Any) -> None:
        """A prefork child: threads and locks do not survive fork, start afresh."""
        self.stats = _StatsBuffer()
        self.flusher = None
        self._running = {}
        self._start_flusher()

    def on_process_shutdown(self, pid: int | None = None, **_: Any) -> None:
        if self.flusher is not None:
            self.flusher.stop()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
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


# --- install --------------------------------------------------------------------------

_SIGNALS = (
    ("task_prerun", "on_prerun"),
    ("task_postrun", "on_postrun"),
    ("task_success", "on_success"),
    ("task_failure", "on_failure"),
    ("task_retry", "on_retry"),
    ("task_unknown", "on_unknown"),
    ("task_rejected", "on_rejected"),
    ("worker_init", "on_worker_init"),
    ("celeryd_after_setup", "on_after_setup"),
    ("worker_ready", "on_worker_ready"),
    ("worker_process_init", "on_process_init"),
    ("worker_process_shutdown", "on_process_shutdown"),
    ("worker_shutdown", "on_worker_shutdown"),
)


def install(app: Any) -> Instrumentation:
    """Instrument the Celery app ``app`` (idempotent). Call it in the module defining the app.

    Settings come from the environment: ``GRIDQ_METRICS_PORT`` (serve metrics only if
    set), ``GRIDQ_METRICS_HOST``, ``GRIDQ_CELERY_STATS_URL`` (else ``INPUT_REDIS_URL``,
    else the broker URL), ``GRIDQ_CELERY_CHECKS`` (``strict``/``warn``/``off``),
    ``GRIDQ_CELERY_TIME_LIMITS`` (``enforce``/``off``).
    """
    existing = getattr(app, "_gridq_instrumentation", None)
    if isinstance(existing, Instrumentation):
        return existing
    from celery import signals

    inst = Instrumentation(app=app, config=_env_config(app))
    for signal_name, method in _SIGNALS:
        getattr(signals, signal_name).connect(
            getattr(inst, method), weak=False, dispatch_uid=f"gridq-{id(app)}-{signal_name}"
        )
    app._gridq_instrumentation = inst
    return inst


# --- zero-code entry point: gridq.worker.celery_cli -----------------------------------


def __getattr__(name: str) -> Any:
    # main, build_argv and USAGE live in celery_cli, which imports this module: loaded on
    # first use, so that `from gridq.worker.celery import main` keeps working.
    if name in ("main", "build_argv", "USAGE"):
        from gridq.worker import celery_cli

        return getattr(celery_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    # Run the canonical modules, not this __main__ copy: a user module that calls
    # install() imports gridq.worker.celery and must find the same state.
    from gridq.worker.celery_cli import main as _main

    sys.exit(_main())
