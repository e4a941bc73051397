"""``gridq worker MODULE:APP``: run a worker; ``gridq worker --check``: liveness probe.

Imports stay light (no web stack, no Docker SDK): a worker container starts fast and
idles small.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from gridq.errors import EXIT_CONFIG, EXIT_ERROR, EXIT_REDIS_AUTH, ConfigError, RedisAuthError


def _exit(code: int) -> None:
    # os._exit: threads a handler started (non-daemonic pools of its own...) must not
    # keep a stopped worker alive. Flush first: nothing we printed may be lost.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("app_path", metavar="MODULE:APP", required=False)
@click.option(
    "--pool",
    type=click.Choice(["threads", "processes", "solo", "asyncio"]),
    default=None,
    help="Where handlers run [env GRIDQ_WORKER_POOL; default threads].",
)
@click.option(
    "--concurrency", "-c", type=int, default=None, help="Pool size [GRIDQ_WORKER_CONCURRENCY]."
)
@click.option(
    "--prefetch",
    type=int,
    default=None,
    help="Jobs claimed beyond the running ones [GRIDQ_WORKER_PREFETCH].",
)
@click.option(
    "--burst",
    is_flag=True,
    default=None,
    help="Exit 0 once the queue is empty, nothing in flight and no retry pending.",
)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file ([worker] table) [GRIDQ_CONFIG].",
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Port of /metrics and /health [GRIDQ_METRICS_PORT].",
)
@click.option("--input-url", default=None, help="Redis URL of the input queue [INPUT_REDIS_URL].")
@click.option("--input-queue", default=None, help="Input queue name [INPUT_QUEUE].")
@click.option(
    "--output-url", default=None, help="Redis URL of the output queue [OUTPUT_REDIS_URL]."
)
@click.option(
    "--output-queue",
    default=None,
    help="Output queue name; empty: results discarded [OUTPUT_QUEUE].",
)
@click.option(
    "--lease-seconds",
    type=float,
    default=None,
    help="Claim lease [GRIDQ_WORKER_LEASE_SECONDS; default 30].",
)
@click.option(
    "--grace-seconds",
    type=float,
    default=None,
    help="SIGTERM grace [GRIDQ_WORKER_GRACE_SECONDS; default 25].",
)
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING... [GRIDQ_LOG_LEVEL].")
@click.option(
    "--check",
    is_flag=True,
    help="Liveness probe (Docker HEALTHCHECK): exit 0 if the worker here is alive.",
)
def worker(
    app_path: str | None,
    pool: str | None,
    concurrency: int | None,
    prefetch: int | None,
    burst: bool | None,
    config: str | None,
    metrics_port: int | None,
    input_url: str | None,
    input_queue: str | None,
    output_url: str | None,
    output_queue: str | None,
    lease_seconds: float | None,
    grace_seconds: float | None,
    log_level: str | None,
    check: bool,
) -> None:
    """Run a worker for the App in MODULE (MODULE:APP, APP defaults to ``app``).

    \b
    Example:
      gridq worker myjobs:app --concurrency 16
      gridq worker myjobs:app --pool processes --burst
    """
    from gridq.worker.settings import load_worker_settings

    try:
        settings = load_worker_settings(
            config,
            worker_pool=pool,
            worker_concurrency=concurrency,
            worker_prefetch=prefetch,
            worker_burst=burst or None,
            metrics_port=metrics_port,
            input_url=input_url,
            input_queue=input_queue,
            output_url=output_url,
            output_queue=output_queue,
            worker_lease_seconds=lease_seconds,
            worker_grace_seconds=grace_seconds,
            log_level=log_level,
        )
    except ConfigError as exc:
        click.echo(f"gridq worker: {exc}", err=True)
        _exit(EXIT_CONFIG)
        return
    if check:
        from gridq.worker.health import probe

        ok, msg = probe(settings)
        click.echo(msg, err=not ok)
        _exit(0 if ok else EXIT_ERROR)
        return
    if not app_path:
        raise click.UsageError("give the app to run as MODULE:APP (for example myjobs:app)")
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Like celery/rq: the app module is found relative to where the worker starts.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    from gridq.worker.app import load_app
    from gridq.worker.worker import Worker

    try:
        app = load_app(app_path)
        code = Worker(app, settings).run()
    except ConfigError as exc:
        click.echo(f"gridq worker: {exc}", err=True)
        _exit(EXIT_CONFIG)
        return
    except RedisAuthError:
        _exit(EXIT_REDIS_AUTH)  # already logged, one line
        return
    _exit(code)
