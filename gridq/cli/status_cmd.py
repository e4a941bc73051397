"""``gridq status``: nodes and tasks at a glance."""

from __future__ import annotations

from typing import Any

import click

from gridq.cli.common import console, echo_json, friendly, hub_client
from gridq.cli.task_cmd import hub_options, placement_problems, tasks_table


@click.command()
@hub_options
@friendly
def status(hub_url: str | None, token: str | None, as_json: bool) -> None:
    """Nodes and tasks as tables: queue depth, rate, in flight, failures, instances, errors.

    \b
    Example:
      gridq status
      gridq status --json | jq '.tasks[].live.depth'
    """
    hub = hub_client(hub_url, token)
    nodes = hub.get("/api/nodes")
    tasks = hub.get("/api/tasks")
    doctor = _doctor_summary(hub)
    if as_json:
        echo_json({"hub": hub.url, "nodes": nodes, "tasks": tasks, "doctor": doctor})
        return
    con = console()
    con.print(nodes_table(nodes))
    con.print(tasks_table(tasks))
    for line in placement_problems(tasks, nodes):
        con.print(f"task {line}", markup=False, highlight=False)
    if doctor:
        con.print(doctor if doctor.startswith("doctor") else f"doctor: {doctor}")


def _doctor_summary(hub: Any) -> str | None:
    """One line from the hub's doctor, when it serves one."""
    try:
        resp = hub._http.get("/api/doctor", params={"window": 0})
        if resp.status_code != 200:
            return None
        return str(resp.json().get("summary") or "") or None
    except Exception:
        return None


def nodes_table(nodes: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title="nodes")
    for col in ("node", "status", "host", "arch", "runtime", "slots", "running", "errors"):
        t.add_column(col, overflow="fold")
    for n in nodes:
        running = ", ".join(f"{k}×{v}" for k, v in sorted((n.get("running") or {}).items())) or "-"
        errors = "; ".join(n.get("errors") or []) or "-"
        t.add_row(
            n["node_id"],
            n["status"],
            n.get("hostname", ""),
            n.get("arch", ""),
            n.get("runtime", ""),
            str(n.get("parallelism", "")),
            running,
            errors,
        )
    return t
