"""``gridq dlq``: inspect, retry and purge a queue's dead letters."""

from __future__ import annotations

import click

from gridq.cli.common import console, echo_json, friendly, redis_location

_url = click.option(
    "--redis-url",
    envvar="GRIDQ_REDIS_URL",
    help="Redis URL [env GRIDQ_REDIS_URL; default: the local stack's].",
)
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def dlq() -> None:
    """Dead-letter queues.

    \b
    Examples:
      gridq dlq list numbers
      gridq dlq retry numbers
      gridq dlq purge numbers --yes
    """


@dlq.command("list")
@click.argument("queue")
@click.option("--limit", default=20, show_default=True)
@_url
@_json
@friendly
def list_(queue: str, limit: int, redis_url: str | None, as_json: bool) -> None:
    """List dead jobs of QUEUE, newest first, with their error. Example: gridq dlq list numbers"""
    from rich.table import Table

    from gridq.queue import Queue

    q = Queue.from_url(redis_location(redis_url), queue)
    dead = q.dead_letters(limit)
    if as_json:
        echo_json(dead)
        return
    if not dead:
        click.echo(f"no dead jobs in {queue}")
        return
    t = Table(title=f"dead letters of {queue} ({q.stats()['dead']} in all)")
    for col in ("id", "task", "attempts", "error", "item"):
        t.add_column(col, overflow="fold")
    for d in dead:
        item = d.get("item", "<binary>" if "item_b64" in d else "")
        err = f"{d.get('error_type', '')}: {d.get('error', '')}".strip(": ")
        t.add_row(
            str(d.get("id") or ""),
            str(d.get("task") or "(raw)"),
            str(d.get("attempts", "")),
            err,
            str(item)[:60],
        )
    console().print(t)


@dlq.command()
@click.argument("queue")
@click.option("--limit", type=int, help="At most this many (oldest first).")
@_url
@_json
@friendly
def retry(queue: str, limit: int | None, redis_url: str | None, as_json: bool) -> None:
    """Push dead jobs of QUEUE back to the queue. Example: gridq dlq retry numbers"""
    from gridq.queue import Queue

    n = Queue.from_url(redis_location(redis_url), queue).retry_dead(limit)
    echo_json({"queue": queue, "retried": n}) if as_json else click.echo(
        f"moved {n} dead job(s) back to {queue}"
    )


@dlq.command()
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask.")
@_url
@_json
@friendly
def purge(queue: str, yes: bool, redis_url: str | None, as_json: bool) -> None:
    """Delete the dead jobs of QUEUE. Example: gridq dlq purge numbers --yes"""
    from gridq.queue import Queue

    if not yes and not as_json:
        click.confirm(f"delete every dead job of {queue}?", abort=True)
    n = Queue.from_url(redis_location(redis_url), queue).purge_dead()
    echo_json({"queue": queue, "purged": n}) if as_json else click.echo(
        f"deleted {n} dead job(s) of {queue}"
    )
