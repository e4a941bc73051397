"""``gridq doctor``: find what is wrong with the grid and say how to fix it."""

from __future__ import annotations

import os
import sys

import click

from gridq.cli.common import echo_json, friendly, local_stack
from gridq.doctor.checks import Check


def _hub(url: str | None, token: str | None) -> tuple[str | None, str | None]:
    """Flags, then GRIDQ_HUB_URL / GRIDQ_HUB_TOKEN[_FILE], then the local stack; fails
    only on an unreadable or conflicting GRIDQ_HUB_TOKEN_FILE."""
    from gridq.settings import env_secret

    url = url or os.environ.get("GRIDQ_HUB_URL")
    token = token or env_secret("GRIDQ_HUB_TOKEN")
    if not (url and token):
        stack = local_stack()
        if stack and (not url or url.rstrip("/") == str(stack.get("hub_url", "")).rstrip("/")):
            url = url or stack.get("hub_url")
            token = token or stack.get("admin_token")
    return (url.rstrip("/") if url else None), token


def _redis_urls(flags: tuple[str, ...]) -> list[tuple[str, str]]:
    from gridq.settings import env_secret

    out = [(u, "--redis-url") for u in flags]
    env = env_secret("GRIDQ_REDIS_URL")
    if env:
        out.append((env, "GRIDQ_REDIS_URL"))
    if not out:
        stack = local_stack()
        if stack and stack.get("redis_url"):
            out.append((str(stack["redis_url"]), "the local stack"))
    return out


@click.command()
@click.argument("task", required=False)
@click.option(
    "--node",
    is_flag=True,
    help="Also check this machine as a node: Docker, images, disk, memory, network.",
)
@click.option(
    "--queue",
    metavar="NAME",
    help="Check one queue (by name) in the Redis given by --redis-url / GRIDQ_REDIS_URL.",
)
@click.option("--hub-url", help="Hub base URL (default: GRIDQ_HUB_URL, else the local stack).")
@click.option("--token", help="Admin token (default: GRIDQ_HUB_TOKEN, else the local stack).")
@click.option(
    "--redis-url",
    "redis_urls",
    multiple=True,
    help="A Redis URL to check directly (repeatable; default: GRIDQ_REDIS_URL).",
)
@click.option(
    "--hub-bind",
    metavar="HOST:PORT",
    envvar="GRIDQ_HUB_BIND",
    help="Check that a hub can listen there, and who holds the port if not.",
)
@click.option(
    "--window",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds between the two looks at each queue (rates).",
)
@click.option(
    "--probe-image",
    envvar="GRIDQ_DOCTOR_PROBE_IMAGE",
    help="Local image for the node's network probe (needs sh and nc or python3).",
)
@click.option(
    "--timeout",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds to wait for the hub and each Redis.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@friendly
def doctor(
    task: str | None,
    node: bool,
    queue: str | None,
    hub_url: str | None,
    token: str | None,
    redis_urls: tuple[str, ...],
    hub_bind: str | None,
    window: float,
    probe_image: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Run the troubleshooting checks and print check, result, what it saw, and the fix.

    \b
    Examples:
      gridq doctor                 # the hub, its Redis, every task's Redis and queues
      gridq doctor resize          # one task
      gridq doctor --node          # on a node machine: Docker, images, memory, network
      gridq doctor --queue jobs --redis-url redis://host:6379/0
      gridq doctor --hub-bind 0.0.0.0:8080   # before starting a hub: is the port free?

    Exit code 0 when nothing fails, 1 otherwise (warnings do not fail).
    """
    from gridq.doctor.runner import Options, exit_code, run_cli, summary

    url, tok = _hub(hub_url, token)
    opts = Options(
        hub_url=url,
        token=tok,
        redis_urls=_redis_urls(redis_urls),
        task=task,
        queue=queue,
        node=node,
        hub_bind=hub_bind,
        window=window,
        probe_image=probe_image,
        timeout=timeout,
    )
    results = run_cli(opts)
    code = exit_code(results)
    if as_json:
        echo_json(
            {"ok": code == 0, "summary": summary(results), "checks": [r.as_dict() for r in results]}
        )
    else:
        _table(results, summary(results))
    sys.exit(code)


def _table(results: list[Check], line: str) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    style = {"ok": "green", "warn": "yellow", "fail": "bold red"}
    table = Table(expand=False)
    table.add_column("check", overflow="fold")
    table.add_column("result")
    table.add_column("what it saw", overflow="fold")
    table.add_column("fix", overflow="fold")
    for r in results:
        # Text, not markup: what a check saw may contain brackets.
        table.add_row(
            Text(r.label), Text(r.status, style=style[r.status]), Text(r.saw), Text(r.fix)
        )
    console.print(table)
    console.print(Text(line))
