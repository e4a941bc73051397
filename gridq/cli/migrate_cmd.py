"""``gridq migrate``: move 0.1.0-layout Redis keys to the 0.2.0 layout."""

from __future__ import annotations

import click

from gridq.cli.common import echo_json, friendly, redis_location


@click.command()
@click.argument("queues", nargs=-1)
@click.option(
    "--redis-url",
    envvar="GRIDQ_REDIS_URL",
    help="Redis URL [env GRIDQ_REDIS_URL; default: the local stack's].",
)
@click.option("--dry-run", is_flag=True, help="List the moves, change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def migrate(queues: tuple[str, ...], redis_url: str | None, dry_run: bool, as_json: bool) -> None:
    """Move the keys of QUEUES (default: every queue found, and the hub's state) from
    key layout 1 (gridq 0.1.0) to layout 2. Stop the hub and the workers first; see
    docs/protocol.md "Key layout versions".

    \b
    Examples:
      gridq migrate --dry-run
      gridq migrate numbers squares
    """
    from gridq.keys import check_queue_name
    from gridq.migrate import migrate as run
    from gridq.redisurl import client

    for q in queues:
        try:
            check_queue_name(q)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="QUEUES") from None
    conn = client(redis_location(redis_url), timeout=10)
    try:
        rep = run(conn, queues, dry_run=dry_run)
    finally:
        conn.close()
    if as_json:
        echo_json({"dry_run": dry_run, "moved": rep.moved, "dropped": rep.dropped})
        return
    verb = "would move" if dry_run else "moved"
    for old, new in rep.moved:
        click.echo(f"{verb} {old} -> {new}")
    for lease in rep.dropped:
        click.echo(f"{'would drop' if dry_run else 'dropped'} {lease}")
    click.echo(f"{len(rep.moved)} keys {verb}, {len(rep.dropped)} old leases dropped")
