"""``gridq task``: register and manage tasks at the hub."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from gridq.cli.common import console, echo_json, fail, friendly, hub_client

_hub = [
    click.option(
        "--hub-url",
        envvar="GRIDQ_HUB_URL",
        help="Hub URL [env GRIDQ_HUB_URL; default: the local stack's].",
    ),
    click.option("--token", envvar="GRIDQ_HUB_TOKEN", help="Admin token [env GRIDQ_HUB_TOKEN]."),
    click.option("--json", "as_json", is_flag=True, help="Print JSON."),
]


def hub_options(fn: Any) -> Any:
    for opt in reversed(_hub):
        fn = opt(fn)
    return fn


@click.group()
def task() -> None:
    """Tasks: what runs, reading which queue.

    \b
    Examples:
      gridq task register --name squares --command 'gridq worker myjobs:app' \\
          --input-redis redis://:pw@localhost:6379/0 --input-queue numbers --replicas 2
      gridq task register --file task.json      # an IDM-GridCore ComputeHub body works as is
      gridq task list
    """


def _env_pairs(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        if "=" not in v:
            fail(f"--env takes KEY=VALUE, got {v!r}")
        k, _, val = v.partition("=")
        out[k] = val
    return out


@task.command(context_settings={"ignore_unknown_options": False})
@click.option(
    "--file",
    "file_",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="JSON body (- for stdin).",
)
@click.option("--name")
@click.option("--image")
@click.option("--command", help="Program and arguments, as one string (split like a shell).")
@click.option("--input-redis")
@click.option("--output-redis")
@click.option("--input-queue")
@click.option("--output-queue")
@click.option("--replicas", type=int)
@click.option("--pool", type=click.Choice(["threads", "processes", "solo", "asyncio"]))
@click.option("--concurrency", type=int)
@click.option("--env", "env", multiple=True, help="KEY=VALUE, repeatable.")
@click.option(
    "--no-validate", is_flag=True, help="Do not check the Redis URLs now (offline registration)."
)
@hub_options
@friendly
def register(
    file_: str | None,
    no_validate: bool,
    env: tuple[str, ...],
    hub_url: str | None,
    token: str | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Register a task from a JSON body and/or flags (flags win).

    \b
    Example:
      gridq task register --name squares --image myorg/squares:1 \\
          --input-redis redis://:pw@redis:6379/0 --input-queue numbers --output-queue squares
    """
    import shlex

    body: dict[str, Any] = {}
    if file_:
        text = sys.stdin.read() if file_ == "-" else Path(file_).read_text()
        try:
            body = json.loads(text)
        except ValueError as exc:
            fail(f"{file_}: not JSON: {exc}")
        if not isinstance(body, dict):
            fail(f"{file_}: the body must be a JSON object")
    if fields.get("command"):
        fields["command"] = shlex.split(fields["command"])
    body.update({k: v for k, v in fields.items() if v is not None})
    if env:
        body["env"] = {**body.get("env", {}), **_env_pairs(env)}
    hub = hub_client(hub_url, token)
    out = hub.post("/api/tasks", json=body, params={"validate": "false"} if no_validate else None)
    echo_json(out) if as_json else click.echo(
        f"registered task {out['name']} (replicas {out['replicas']}, queue {out['input_queue']})"
    )


@task.command("list")
@hub_options
@friendly
def list_(hub_url: str | None, token: str | None, as_json: bool) -> None:
    """List tasks with live figures. Example: gridq task list --json"""
    tasks = hub_client(hub_url, token).get("/api/tasks")
    if as_json:
        echo_json(tasks)
        return
    console().print(tasks_table(tasks))


def tasks_table(tasks: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title="tasks")
    for col in (
        "task",
        "status",
        "queue",
        "depth",
        "rate/s",
        "in flight",
        "processed",
        "failed",
        "dead",
        "instances",
    ):
        t.add_column(col, justify="left" if col in ("task", "status", "queue") else "right")
    for x in tasks:
        live = x.get("live") or {}
        inst = x.get("instances") or {}

        def n(key: str, live: dict[str, Any] = live) -> str:
            v = live.get(key)
            return "-" if v is None else str(v)

        rate = live.get("rate")
        t.add_row(
            x["name"],
            x.get("status", ""),
            x.get("input_queue", ""),
            n("depth"),
            "-" if rate is None else f"{rate:,.1f}",
            n("in_flight"),
            n("processed"),
            n("failed"),
            n("dead"),
            f"{inst.get('running', 0)}/{inst.get('desired', x.get('replicas', 0))}",
        )
    return t


@task.command()
@click.argument("name")
@hub_options
@friendly
def show(name: str, hub_url: str | None, token: str | None, as_json: bool) -> None:
    """Show one task (URLs masked). Example: gridq task show squares"""
    hub = hub_client(hub_url, token)
    out = hub.get(f"/api/tasks/{name}")
    if as_json:
        echo_json(out)
        return
    for k, v in out.items():
        click.echo(f"{k:>14}: {json.dumps(v) if isinstance(v, dict | list) else v}")
    for line in placement_problems([out], hub.get("/api/nodes")):
        click.echo(f"{'placement':>14}: {line}")


def placement_problems(tasks: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> list[str]:
    """A line for each task whose replicas no online node's runtime can run."""
    from gridq.doctor.placement import runtime_mismatch

    out = []
    for t in tasks:
        inst = t.get("instances") or {}
        desired = int(inst.get("desired", t.get("replicas", 0)) or 0)
        placed = int(inst.get("placed") or 0)
        why = runtime_mismatch(t, nodes) if placed < desired else None
        if why:
            out.append(f"{t['name']}: {placed}/{desired} placed: {why[0]}. Fix: {why[1]}")
    return out


def _simple(action: str, method: str, path: str, doc: str) -> click.Command:
    @click.argument("name")
    @hub_options
    @friendly
    def cmd(name: str, hub_url: str | None, token: str | None, as_json: bool) -> None:
        out = hub_client(hub_url, token).request(method, path.format(name=name))
        if as_json:
            echo_json(out or {"name": name, action: True})
        else:
            click.echo(f"{action}: {name}")

    cmd.__doc__ = doc
    return task.command(action)(cmd)


_simple(
    "pause",
    "POST",
    "/api/tasks/{name}/pause",
    "Pause a task: its workers stop. Example: gridq task pause squares",
)
_simple(
    "resume",
    "POST",
    "/api/tasks/{name}/resume",
    "Resume a paused task. Example: gridq task resume squares",
)
_simple(
    "delete",
    "DELETE",
    "/api/tasks/{name}",
    "Delete a task; its workers stop. Example: gridq task delete squares",
)


@task.command("next")
@hub_options
@friendly
def next_(hub_url: str | None, token: str | None, as_json: bool) -> None:
    """Sequential mode: move on to the next task. Example: gridq task next"""
    out = hub_client(hub_url, token).post("/api/tasks/next")
    echo_json(out) if as_json else click.echo(out.get("message", out))


@task.command()
@hub_options
@friendly
def finish(hub_url: str | None, token: str | None, as_json: bool) -> None:
    """Sequential mode: finish the current task. Example: gridq task finish"""
    out = hub_client(hub_url, token).post("/api/tasks/finish")
    echo_json(out) if as_json else click.echo(out.get("message", out))
