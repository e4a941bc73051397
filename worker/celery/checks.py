"""Start-up checks for a Celery app run under gridq: the traps mineru-api fell into.

Each check yields a ``Finding``. ``error`` findings refuse the start (one line on
stderr, exit code 3 = EXIT_CONFIG), ``warning`` and ``info`` findings are logged and
the worker starts. ``GRIDQ_CELERY_CHECKS=warn`` turns errors into warnings,
``GRIDQ_CELERY_CHECKS=off`` skips the checks. docs/celery.md lists every check.

The functions take the app duck-typed (``app.conf``, ``app.tasks``) and never import
Celery themselves, so they are testable with a bare Celery app and no worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["error", "warning", "info"]

# kombu's Redis transport default (kombu/transport/redis.py: Channel.visibility_timeout).
KOMBU_DEFAULT_VISIBILITY_TIMEOUT = 3600.0
# Pools where Celery itself does not enforce time limits (no timer, no child to kill).
POOLS_WITHOUT_TIME_LIMITS = frozenset({"threads", "solo"})


@dataclass(frozen=True)
class Finding:
    level: Level
    code: str
    message: str

    def line(self) -> str:
        return f"gridq celery check [{self.code}]: {self.message}"


def pool_name(pool: Any) -> str:
    """Normalise Celery's pool option (alias string or class) to one short name."""
    if pool is None:
        return "prefork"
    if not isinstance(pool, str):
        module = getattr(pool, "__module__", "") or ""
        pool = module.rsplit(".", 1)[-1]
    name = pool.lower()
    return {
        "thread": "threads",
        "threads": "threads",
        "processes": "prefork",
        "prefork": "prefork",
        "asynpool": "prefork",
    }.get(name, name)


def user_tasks(app: Any) -> list[Any]:
    """The app's own tasks (Celery's built-in ``celery.*`` tasks excluded)."""
    return [t for name, t in sorted(app.tasks.items()) if not name.startswith("celery.")]


def _limit(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if f > 0 else None


def longest_hard_limit(app: Any) -> tuple[float | None, str]:
    """The longest hard time limit any task can have, and where it comes from."""
    best: float | None = _limit(app.conf.task_time_limit)
    where = "task_time_limit"
    for task in user_tasks(app):
        lim = _limit(getattr(task, "time_limit", None))
        if lim is not None and (best is None or lim > best):
            best, where = lim, f"task {task.name}"
    return best, where


def any_time_limits(app: Any) -> list[str]:
    """Where time limits are configured (settings and tasks), for the threads-pool check."""
    found: list[str] = []
    for setting in ("task_time_limit", "task_soft_time_limit"):
        if _limit(app.conf.get(setting)) is not None:
            found.append(setting)
    for task in user_tasks(app):
        for attr in ("time_limit", "soft_time_limit"):
            conf_value = app.conf.get(f"task_{attr}")
            value = _limit(getattr(task, attr, None))
            if value is not None and value != _limit(conf_value):
                found.append(f"{task.name}.{attr}")
    return found


def _broker_scheme(app: Any) -> str:
    url = str(app.conf.broker_url or "")
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _is_redis(scheme: str) -> bool:
    return scheme.startswith("redis") or scheme in ("rediss", "unix", "sentinel", "sqs")


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


@dataclass(frozen=True)
class _Context:
    """What the checks read from the app, gathered once."""

    app: Any
    pool: str
    tasks: list[Any]
    acks_late: bool  # globally or for any task
    enforce_time_limits: bool

    @property
    def conf(self) -> Any:
        return self.app.conf


def run_checks(app: Any, pool: Any, *, enforce_time_limits: bool = True) -> list[Finding]:
    """Every check for ``app`` about to start a worker with ``pool``."""
    tasks = user_tasks(app)
    ctx = _Context(
        app=app,
        pool=pool_name(pool),
        tasks=tasks,
        acks_late=bool(app.conf.task_acks_late)
        or any(getattr(t, "acks_late", False) for t in tasks),
        enforce_time_limits=enforce_time_limits,
    )
    out: list[Finding] = []
    for check in (
        _check_broker,
        _check_visibility_timeout,
        _check_reject_on_worker_lost,
        _check_time_limits,
    ):
        finding = check(ctx)
        if finding is not None:
            out.append(finding)
    return out


def _check_broker(ctx: _Context) -> Finding | None:
    scheme = _broker_scheme(ctx.app)
    if not scheme or _is_redis(scheme):
        return None
    return Finding(
        "warning",
        "broker",
        f"broker transport {scheme!r} is not Redis: the hub cannot show this "
        "app's queue depth or processed counts (metrics still work)",
    )


def _check_visibility_timeout(ctx: _Context) -> Finding | None:
    """kombu re-delivers a message not acknowledged within the visibility timeout."""
    scheme = _broker_scheme(ctx.app)
    if scheme and not _is_redis(scheme):
        return None
    opts = ctx.conf.broker_transport_options or {}
    vt = _limit(opts.get("visibility_timeout")) or KOMBU_DEFAULT_VISIBILITY_TIMEOUT
    hard, where = longest_hard_limit(ctx.app)
    if hard is None:
        if not ctx.acks_late:
            return None
        return Finding(
            "warning",
            "visibility_timeout",
            f"acks_late is on and no hard time limit is set: a task running longer than "
            f"visibility_timeout ({vt:g} s) is handed to another worker and runs twice; "
            "set task_time_limit below visibility_timeout",
        )
    if vt > hard:
        return None
    too_short = (
        f"broker_transport_options visibility_timeout ({vt:g} s) is not larger "
        f"than the longest hard time limit ({hard:g} s, {where})"
    )
    if ctx.acks_late:
        return Finding(
            "error",
            "visibility_timeout",
            f"{too_short} with acks_late on: a task running longer than {vt:g} s is handed "
            f"to another worker and runs twice; set visibility_timeout above {hard:g} "
            f"(e.g. {int(hard * 1.1) + 60})",
        )
    return Finding(
        "warning",
        "visibility_timeout",
        f"{too_short}: prefetched and ETA/countdown tasks held longer than that are "
        f"delivered twice; set visibility_timeout above {hard:g}",
    )


def _check_reject_on_worker_lost(ctx: _Context) -> Finding | None:
    """With acks_late, a task whose process dies is acknowledged (lost) unless told otherwise."""
    if not ctx.acks_late:
        return None
    conf = ctx.conf
    lost_ok = bool(conf.task_reject_on_worker_lost)
    offenders = [
        t.name
        for t in ctx.tasks
        if (getattr(t, "acks_late", False) or conf.task_acks_late)
        and not (getattr(t, "reject_on_worker_lost", None) or lost_ok)
    ]
    if not offenders and not (conf.task_acks_late and not lost_ok and not ctx.tasks):
        return None
    names = _shown(offenders)
    return Finding(
        "warning",
        "reject_on_worker_lost",
        "acks_late without task_reject_on_worker_lost"
        + (f" ({names})" if names else "")
        + ": when a worker process dies mid-task (OOM kill, SIGKILL) Celery "
        "acknowledges the message and the task is lost instead of redelivered; "
        "set task_reject_on_worker_lost=True (tasks must then be idempotent)",
    )


def _check_time_limits(ctx: _Context) -> Finding | None:
    """Celery ignores time limits under the threads and solo pools: enforced, or refused."""
    if ctx.pool not in POOLS_WITHOUT_TIME_LIMITS:
        return None
    limits = any_time_limits(ctx.app)
    if not limits:
        return None
    if ctx.enforce_time_limits:
        return Finding(
            "info",
            "time_limits",
            f"Celery ignores time limits under the {ctx.pool} pool ({_shown(limits)}); gridq "
            "enforces them: SoftTimeLimitExceeded, then TimeLimitExceeded, raised "
            "in the task's thread at the deadline",
        )
    return Finding(
        "error",
        "time_limits",
        f"time limits are set ({_shown(limits)}) but Celery ignores them under the "
        f"{ctx.pool} pool and GRIDQ_CELERY_TIME_LIMITS=off disables gridq's "
        "enforcement: use --pool prefork or enable enforcement",
    )
