"""The zero-code entry point: ``python -m gridq.worker.celery`` and ``gridq celery``.

::

    python -m gridq.worker.celery -A proj.celery:app worker -Q q1,q2 --pool threads -c 8 --hostname INSTANCE_ID

What the node runs for a task of kind ``celery`` (``gridq celery worker``, with the app in
``GRIDQ_CELERY_APP`` and the queues in ``INPUT_QUEUE``): loads the app, completes the
``celery worker`` command line from the gridq environment (``build_argv``), installs the
instrumentation of gridq.worker.celery and runs the worker. The broker URL comes only from
the environment (``CELERY_BROKER_URL``, else ``INPUT_REDIS_URL``), never from the command
line, where ``ps`` would show it.

Importing this module does not import Celery; ``main()`` does.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from typing import Any

from gridq.errors import EXIT_CONFIG, ConfigError
from gridq.worker.celery.checks import pool_name
from gridq.worker.celery.metrics import MULTIPROC_DIR
from gridq.worker.celery.settings import CelerySettings, load_celery_settings
from gridq.worker.celery.wiring import install

__all__ = ["USAGE", "build_argv", "main"]


def _opt_value(args: list[str], short: str | None, long: str) -> tuple[bool, str | None]:
    """Whether an option is present in ``args`` and its value (``-Px``, ``-P x``, ``--pool=x``)."""
    for i, a in enumerate(args):
        if a == long or (short and a == short):
            return True, args[i + 1] if i + 1 < len(args) else None
        if a.startswith(long + "="):
            return True, a.split("=", 1)[1]
        if short and a.startswith(short) and len(a) > len(short) and not a.startswith("--"):
            return True, a[len(short) :]
    return False, None


def _pop_app(args: list[str]) -> tuple[str | None, list[str]]:
    out: list[str] = []
    app_path: str | None = None
    it = iter(args)
    for a in it:
        if a in ("-A", "--app"):
            app_path = next(it, None)
        elif a.startswith("--app="):
            app_path = a.split("=", 1)[1]
        elif a.startswith("-A") and len(a) > 2:
            app_path = a[2:]
        else:
            out.append(a)
    return app_path, out


def build_argv(args: list[str], app: Any, settings: CelerySettings) -> list[str]:
    """The ``celery worker`` argv: the user's flags, completed from the gridq environment.

    Flag > environment (``GRIDQ_WORKER_POOL``, ``GRIDQ_WORKER_CONCURRENCY``,
    ``INPUT_QUEUE``, ``INSTANCE_ID``) > the app's own configuration > pool ``threads``.
    """
    argv = list(args)
    if "worker" not in argv:
        argv.insert(0, "worker")
    if not _opt_value(argv, "-P", "--pool")[0]:
        pool = settings.celery_pool
        if pool is None:
            explicit = "worker_pool" in getattr(app.conf, "changes", {})
            pool = str(app.conf.worker_pool) if explicit else "threads"
        argv += ["--pool", pool]
    completions = (
        ("-c", "--concurrency", str(settings.worker_concurrency or "")),
        ("-Q", "--queues", settings.input_queue.strip()),
        ("-n", "--hostname", settings.instance_id.strip()),
    )
    for short, long, value in completions:
        if value and not _opt_value(argv, short, long)[0]:
            argv += [long, value]
    return argv


def _multiproc_metrics_if_prefork(pool: str | None) -> None:
    """Under prefork, let the children's metrics reach the endpoint (prometheus multiprocess mode).

    Must run before prometheus_client is first imported: it picks its value store
    (per-process files in PROMETHEUS_MULTIPROC_DIR) at import time.
    """
    if pool is None or pool_name(pool) != "prefork" or os.environ.get(MULTIPROC_DIR):
        return
    if "prometheus_client" in sys.modules:
        return  # too late; on_after_setup warns
    path = tempfile.mkdtemp(prefix="gridq-prom-")
    os.environ[MULTIPROC_DIR] = path
    atexit.register(shutil.rmtree, path, True)


USAGE = (
    "usage: python -m gridq.worker.celery -A MODULE[:APP] worker [celery worker options]\n"
    "  broker URL from CELERY_BROKER_URL or INPUT_REDIS_URL (never on the command line)"
)


def main(argv: list[str] | None = None) -> int:
    """``python -m gridq.worker.celery -A proj.celery:app worker ...``: instrument, check, run."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help") and "worker" not in args:
        print(USAGE)
        return 0
    try:
        settings = load_celery_settings()
    except ConfigError as exc:
        return _refuse(str(exc))
    app_path, rest = _pop_app(args)
    app_path = app_path or settings.celery_app
    if not app_path:
        return _refuse(f"no Celery app given (-A MODULE[:APP])\n{USAGE}")
    if _opt_value(rest, "-b", "--broker")[0]:
        return _refuse(
            "the broker URL must come from CELERY_BROKER_URL or INPUT_REDIS_URL, "
            "not the command line (ps would show its password)"
        )
    present, pool_flag = _opt_value(rest, "-P", "--pool")
    _multiproc_metrics_if_prefork(pool_flag if present else settings.celery_pool)
    app = _load_app(app_path)
    if app is None:
        return EXIT_CONFIG
    if not settings.celery_broker_url and settings.input_url:
        app.conf.broker_url = settings.input_url
    final = build_argv(rest, app, settings)
    _multiproc_metrics_if_prefork(_opt_value(final, "-P", "--pool")[1])
    install(app, settings)
    return int(app.start(argv=final) or 0)


def _refuse(message: str) -> int:
    print(f"gridq: error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def _load_app(app_path: str) -> Any:
    """The Celery app ``app_path`` names, as ``celery -A`` finds it; None (reported) if not."""
    # Like the celery command: the current directory is importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        from celery.app.utils import find_app
    except ImportError:
        _refuse("Celery is not installed (pip install 'celery[redis]')")
        return None
    try:
        return find_app(app_path)
    except Exception as exc:
        _refuse(f"cannot load Celery app {app_path!r}: {exc}")
        return None
