"""``gridq node``: run the node agent on this machine.

Every option has an environment variable (GRIDQ_HUB_URL, GRIDQ_NODE_TOKEN,
GRIDQ_NODE_<SETTING>) and a TOML key in the [node] table of --config; a flag wins over
the environment, which wins over the file.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from gridq.cli.common import EXIT_USAGE
from gridq.errors import EXIT_CONFIG, ConfigError

# (flag, setting, type, help). Env names come from NodeSettings; help shows them.
_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--hub-url", "hub_url", str, "hub base URL [GRIDQ_HUB_URL]"),
    ("--token", "node_token", str, "node join token [GRIDQ_NODE_TOKEN]"),
    (
        "--ca-file",
        "ca_file",
        click.Path(path_type=Path),
        "CA of the hub's HTTPS certificate [GRIDQ_NODE_CA_FILE or GRIDQ_HUB_CA_FILE]",
    ),
    (
        "--state-dir",
        "state_dir",
        click.Path(path_type=Path),
        "identity and records [GRIDQ_NODE_STATE_DIR]",
    ),
    ("--name", "name", str, "hostname reported to the hub [GRIDQ_NODE_NAME]"),
    (
        "--parallelism",
        "parallelism",
        int,
        "worker slots, default CPU count [GRIDQ_NODE_PARALLELISM]",
    ),
    (
        "--heartbeat-interval",
        "heartbeat_interval",
        float,
        "seconds, default the hub's [GRIDQ_NODE_HEARTBEAT_INTERVAL]",
    ),
    (
        "--stop-timeout",
        "stop_timeout",
        float,
        "SIGTERM grace before SIGKILL, default 30 [GRIDQ_NODE_STOP_TIMEOUT]",
    ),
    (
        "--container-memory",
        "container_memory",
        int,
        "MB per worker, default 1024 [GRIDQ_NODE_CONTAINER_MEMORY]",
    ),
    ("--labels", "labels", str, "k=v,k2=v2 [GRIDQ_NODE_LABELS]"),
    ("--docker-network", "docker_network", str, "network workers join [GRIDQ_NODE_DOCKER_NETWORK]"),
    ("--docker-host", "docker_host", str, "Docker endpoint [GRIDQ_NODE_DOCKER_HOST]"),
    ("--pids-limit", "pids_limit", int, "per worker, default 1024 [GRIDQ_NODE_PIDS_LIMIT]"),
    ("--user", "user", str, "uid[:gid] workers run as [GRIDQ_NODE_USER]"),
    (
        "--log-max-size",
        "log_max_size",
        str,
        "json-file log size, default 10m [GRIDQ_NODE_LOG_MAX_SIZE]",
    ),
    (
        "--log-max-file",
        "log_max_file",
        int,
        "json-file log files, default 3 [GRIDQ_NODE_LOG_MAX_FILE]",
    ),
    (
        "--worker-metrics-port",
        "worker_metrics_port",
        int,
        "GRIDQ_METRICS_PORT in containers, default 9100 [GRIDQ_NODE_WORKER_METRICS_PORT]",
    ),
    (
        "--metrics-bind",
        "metrics_bind",
        str,
        "agent /metrics and /health, default 0.0.0.0:9101, '' off [GRIDQ_NODE_METRICS_BIND]",
    ),
    (
        "--advertise-host",
        "advertise_host",
        str,
        "address Prometheus reaches this node at [GRIDQ_NODE_ADVERTISE_HOST]",
    ),
    ("--platform", "platform", str, "override the detected platform [GRIDQ_NODE_PLATFORM]"),
    (
        "--restart-backoff",
        "restart_backoff",
        float,
        "first restart delay, default 1 s [GRIDQ_NODE_RESTART_BACKOFF]",
    ),
    (
        "--restart-backoff-max",
        "restart_backoff_max",
        float,
        "default 60 s [GRIDQ_NODE_RESTART_BACKOFF_MAX]",
    ),
    (
        "--crashloop-after",
        "crashloop_after",
        int,
        "failures shown as crashloop, default 3 [GRIDQ_NODE_CRASHLOOP_AFTER]",
    ),
    (
        "--healthy-after",
        "healthy_after",
        float,
        "run time that resets the backoff, default 60 s [GRIDQ_NODE_HEALTHY_AFTER]",
    ),
]


def _add_options(fn: Any) -> Any:
    for flag, dest, typ, helptext in reversed(_OPTIONS):
        fn = click.option(flag, dest, type=typ, default=None, help=helptext)(fn)
    return fn


@click.command("node")
@click.option(
    "--runtime",
    type=click.Choice(["docker", "process"]),
    default=None,
    help="run workers as containers or local processes, default docker [GRIDQ_NODE_RUNTIME]",
)
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML file ([node] table; gridnode.toml keys accepted) [GRIDQ_CONFIG]",
)
@click.option(
    "--read-only/--no-read-only",
    "read_only",
    default=None,
    help="read-only root file system for workers [GRIDQ_NODE_READ_ONLY]",
)
@click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"])
)
@_add_options
def node(config: Path | None, log_level: str, **flags: Any) -> None:
    """Run the node agent: register with the hub, run the workers it assigns.

    \b
    Examples:
      gridq node --hub-url http://hub:8080 --token $GRIDQ_NODE_TOKEN
      GRIDQ_NODE_TOKEN=... gridq node --runtime process --hub-url http://127.0.0.1:8080
    """
    # A stop signal that arrives while the agent is still starting (imports, Docker
    # connection) is remembered and honoured as soon as the agent exists.
    early: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: early.append(signum))
    from gridq.node.config import NodeSettings
    from gridq.settings import load

    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Keep library chatter (httpx logs every request at INFO) out of the agent's log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    try:
        settings = load(NodeSettings, config, **flags)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    if not settings.token().strip():
        # Without it every request carries "Bearer " and the hub refuses it forever.
        click.echo("error: no node token: set GRIDQ_NODE_TOKEN or --token", err=True)
        sys.exit(EXIT_USAGE)
    from gridq.node.agent import Agent

    try:
        agent = Agent(settings)
    except RuntimeError as exc:  # no Docker engine, unwritable state dir...
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    agent.install_signals()
    for _ in early:
        agent._on_signal(signal.SIGTERM, None)
    sys.exit(agent.run())
