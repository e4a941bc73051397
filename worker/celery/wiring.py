"""``install(app)``: wire gridq's instrumentation to a Celery app's signals."""

from __future__ import annotations

from typing import Any

from gridq.worker.celery.instrumentation import Instrumentation
from gridq.worker.celery.settings import CelerySettings, load_celery_settings

# Celery signal -> Instrumentation method.
SIGNALS = (
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

_REDIS_SCHEMES = ("redis", "rediss", "unix")


def install(app: Any, settings: CelerySettings | None = None) -> Instrumentation:
    """Instrument the Celery app ``app`` (idempotent). Call it in the module defining the app.

    Settings come from the environment (docs/celery.md, "Environment"); a bad value
    raises ConfigError naming it.
    """
    existing = getattr(app, "_gridq_instrumentation", None)
    if isinstance(existing, Instrumentation):
        return existing
    from celery import signals

    settings = settings or load_celery_settings()
    inst = Instrumentation(app=app, settings=settings, stats_url=stats_url(app, settings))
    for signal_name, method in SIGNALS:
        getattr(signals, signal_name).connect(
            getattr(inst, method), weak=False, dispatch_uid=f"gridq-{id(app)}-{signal_name}"
        )
    app._gridq_instrumentation = inst
    return inst


def stats_url(app: Any, settings: CelerySettings) -> str | None:
    """Where the queue counters go: GRIDQ_CELERY_STATS_URL, INPUT_REDIS_URL, else a Redis broker."""
    if settings.celery_stats_url or settings.input_url:
        return settings.celery_stats_url or settings.input_url
    broker = app.conf.broker_url
    if isinstance(broker, list | tuple):
        broker = broker[0] if broker else None
    if isinstance(broker, str):
        broker = broker.split(";", 1)[0].strip()
        if broker.split("://", 1)[0] in _REDIS_SCHEMES:
            return broker
    return None
