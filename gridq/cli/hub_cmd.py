"""``gridq hub``: serve the hub with uvicorn."""

from __future__ import annotations

import gc
import logging

import click

from gridq.errors import ConfigError


@click.command()
@click.option(
    "--bind",
    default=None,
    metavar="HOST:PORT",
    help="listen address [GRIDQ_HUB_BIND; default 0.0.0.0:8080]",
)
@click.option(
    "--config",
    "config",
    default=None,
    type=click.Path(dir_okay=False),
    help="TOML file with a [hub] table [GRIDQ_CONFIG]",
)
@click.option("--redis-url", default=None, help="Redis for the hub's state [GRIDQ_HUB_REDIS_URL]")
@click.option(
    "--scheduling",
    type=click.Choice(["parallel", "sequential"]),
    default=None,
    help="[GRIDQ_HUB_SCHEDULING; default parallel]",
)
@click.option(
    "--insecure-dev",
    is_flag=True,
    default=None,
    help="allow missing or placeholder tokens (development only) [GRIDQ_HUB_INSECURE_DEV]",
)
@click.option("--log-level", default=None, help="[GRIDQ_HUB_LOG_LEVEL; default info]")
def hub(
    bind: str | None,
    config: str | None,
    redis_url: str | None,
    scheduling: str | None,
    insecure_dev: bool | None,
    log_level: str | None,
) -> None:
    """Run the hub: the REST service for tasks and nodes.

    \b
    Tokens come from the environment (never from flags, which show in `ps`):
      GRIDQ_HUB_TOKEN         admin API token
      GRIDQ_HUB_VIEWER_TOKEN  read-only API token (optional)
      GRIDQ_NODE_TOKEN        node join token
    each one value or several, comma-separated (rotation), or from files:
    GRIDQ_HUB_TOKEN_FILE, ... (Docker secrets); the same for GRIDQ_HUB_REDIS_URL_FILE
    or GRIDQ_HUB_REDIS_PASSWORD[_FILE].
    HTTPS: GRIDQ_HUB_TLS_CERT and GRIDQ_HUB_TLS_KEY (PEM files).
    Other settings: GRIDQ_HUB_HEARTBEAT_INTERVAL, GRIDQ_HUB_NODE_OFFLINE_AFTER,
    GRIDQ_HUB_SCHEDULE_INTERVAL, GRIDQ_HUB_AUTO_ADVANCE, GRIDQ_HUB_VALIDATE_REDIS_TIMEOUT,
    GRIDQ_HUB_STATS_TIMEOUT, GRIDQ_HUB_PUBLIC_DOCS, GRIDQ_HUB_TRUSTED_PROXIES,
    GRIDQ_HUB_AUTH_FAIL_LIMIT, GRIDQ_HUB_AUDIT_RETENTION_DAYS, ... (or the same keys in
    [hub] of --config; docs/configuration.md lists them all).

    \b
    Example:
      GRIDQ_HUB_TOKEN=... GRIDQ_NODE_TOKEN=... gridq hub --bind 0.0.0.0:8080
    """
    import uvicorn

    from gridq.hub.config import HubSettings, split_bind
    from gridq.hub.main import create_app
    from gridq.redisurl import mask
    from gridq.settings import load

    try:
        settings = load(
            HubSettings,
            config,
            bind=bind,
            redis_url=redis_url,
            scheduling=scheduling,
            insecure_dev=insecure_dev,
            log_level=log_level,
        )
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        app = create_app(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    host, port = split_bind(settings.bind)
    tls = settings.tls_cert is not None
    logging.getLogger("gridq.hub").info(
        "hub on %s://%s:%d, state in %s, scheduling %s",
        "https" if tls else "http",
        host,
        port,
        mask(settings.redis_url),
        settings.scheduling,
    )
    # Everything built so far (modules, FastAPI's routes, pydantic's validators: ~80,000
    # objects) lives as long as the process. Move it out of the cyclic GC's reach, or
    # every full collection walks it all and stalls the event loop for tens of ms:
    # measured at 1,000 heartbeats/s, p99 130 ms without this, 26 ms with it.
    gc.collect()
    gc.freeze()
    # Access logs off: one line per heartbeat would drown everything else (and cost
    # throughput); request latency is in /metrics.
    # Keep-alive outlives the heartbeat interval: with uvicorn's default (5 s, the default
    # interval too) the hub closed each node's idle connection just as its next heartbeat
    # was sent, and a share of heartbeats failed on the dead connection.
    keep_alive = int(2 * settings.heartbeat_interval + 5)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_keep_alive=keep_alive,
        # The client address is settled by the hub (trusted_proxies, hub/clientaddr.py);
        # uvicorn's own X-Forwarded-For handling would trust 127.0.0.1 by default.
        proxy_headers=False,
        ssl_certfile=str(settings.tls_cert) if tls else None,
        ssl_keyfile=str(settings.tls_key) if tls else None,
    )
