"""``gridq job``: a job's record, and cancelling it, through the hub."""

from __future__ import annotations

from urllib.parse import quote

import click

from gridq.cli.common import echo_json, friendly, hub_client
from gridq.cli.task_cmd import hub_options


@click.group()
def job() -> None:
    """Jobs: what became of one, or cancel it.

    \b
    Examples:
      gridq job show 5f0c1d... --task add
      gridq job cancel 5f0c1d... --task add
    """


def _path(task: str, job_id: str) -> str:
    return f"/api/tasks/{quote(task, safe='')}/jobs/{quote(job_id, safe='')}"


@job.command()
@click.argument("job_id", metavar="ID")
@click.option("--task", "task", required=True, help="The task (as registered at the hub).")
@hub_options
@friendly
def show(job_id: str, task: str, hub_url: str | None, token: str | None, as_json: bool) -> None:
    """Status, attempts, times, consumer, node, error and result of job ID."""
    c = hub_client(hub_url, token)
    try:
        info = c.get(_path(task, job_id))
    finally:
        c.close()
    if as_json:
        echo_json(info)
        return
    for k, v in info.items():
        if v is not None and k != "traceback":
            click.echo(f"{k:12} {v}")
    if info.get("traceback"):
        click.echo(info["traceback"].rstrip())


@job.command()
@click.argument("job_id", metavar="ID")
@click.option("--task", "task", required=True, help="The task (as registered at the hub).")
@hub_options
@friendly
def cancel(job_id: str, task: str, hub_url: str | None, token: str | None, as_json: bool) -> None:
    """Cancel job ID: it never starts, or its worker interrupts it."""
    c = hub_client(hub_url, token)
    try:
        out = c.request("DELETE", _path(task, job_id))
    finally:
        c.close()
    if as_json:
        echo_json(out)
    elif out["cancelled"]:
        click.echo(f"job {job_id} cancelled")
    else:
        click.echo(f"job {job_id} not cancelled: it is {out['status']}")
