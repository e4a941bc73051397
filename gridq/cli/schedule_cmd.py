"""``gridq schedule``: periodic jobs kept by the hub (docs/schedules.md)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from gridq.cli.common import console, echo_json, fail, friendly, hub_client
from gridq.cli.task_cmd import hub_options

# Every field of a schedule and its default: a field left out of an applied file goes
# back to its default, so the file alone says what the hub holds.
DEFAULTS: dict[str, Any] = {
    "cron": None,
    "every": None,
    "timezone": "UTC",
    "misfire": "skip",
    "jitter": 0.0,
    "paused": False,
}


@click.group()
def schedule() -> None:
    """Schedules: the hub pushes a job to a task's queue on a cron or every S seconds.

    \b
    Examples:
      gridq schedule add nightly --task reports --cron '0 3 * * *' --timezone Europe/Berlin \\
          --job build_report --args '["daily"]'
      gridq schedule add ping --task probes --every 30 --item ping
      gridq schedule list
      gridq schedule apply schedules.toml     # the file is the whole set (like kubectl apply)
    """


def _when(s: dict[str, Any]) -> str:
    return f"every {s['every']} s" if s.get("every") else f"{s['cron']} ({s['timezone']})"


def _time(t: float | None) -> str:
    return (
        "-" if t is None else datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
    )


@schedule.command()
@click.argument("name")
@click.option(
    "--task", "task_", required=True, help="The registered task whose queue gets the jobs."
)
@click.option("--cron", help="Five cron fields, e.g. '*/5 * * * *'.")
@click.option("--every", type=int, help="Seconds between ticks (instead of --cron).")
@click.option("--timezone", default="UTC", show_default=True, help="IANA name the cron is read in.")
@click.option("--item", help="Push this raw item.")
@click.option("--job", "job_task", help="Push a gridq job for this handler name.")
@click.option("--args", "args_json", default="[]", help="The job's args, a JSON list.")
@click.option("--kwargs", "kwargs_json", default="{}", help="The job's kwargs, a JSON object.")
@click.option(
    "--misfire", type=click.Choice(["skip", "once", "all"]), default="skip", show_default=True
)
@click.option("--jitter", type=float, default=0.0, help="Seconds of random delay per tick.")
@click.option("--paused", is_flag=True, help="Create it paused.")
@hub_options
@friendly
def add(
    name: str,
    task_: str,
    item: str | None,
    job_task: str | None,
    args_json: str,
    kwargs_json: str,
    hub_url: str | None,
    token: str | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Create a schedule. Example: gridq schedule add ping --task probes --every 30 --item ping"""
    if (item is None) == (job_task is None):
        fail("give exactly one of --item TEXT or --job TASK [--args JSON] [--kwargs JSON]")
    if job_task is not None:
        try:
            payload: dict[str, Any] = {
                "job": {
                    "task": job_task,
                    "args": json.loads(args_json),
                    "kwargs": json.loads(kwargs_json),
                }
            }
        except ValueError as exc:
            fail(f"--args/--kwargs: not JSON: {exc}")
    else:
        payload = {"item": item}
    body = {"name": name, "task": task_, "payload": payload, **fields}
    out = hub_client(hub_url, token).post("/api/schedules", json=body)
    echo_json(out) if as_json else click.echo(
        f"schedule {out['name']}: {_when(out)} -> task {out['task']}, next run {_time(out['next_run'])}"
    )


@schedule.command("list")
@hub_options
@friendly
def list_(hub_url: str | None, token: str | None, as_json: bool) -> None:
    """List schedules with their next and last run. Example: gridq schedule list"""
    items = hub_client(hub_url, token).get("/api/schedules")
    if as_json:
        echo_json(items)
        return
    from rich.table import Table

    t = Table(title="schedules")
    for col in ("schedule", "task", "when", "next run", "last run", "last job", "runs"):
        t.add_column(col, justify="right" if col == "runs" else "left")
    for s in items:
        t.add_row(
            s["name"] + (" (paused)" if s["paused"] else ""),
            s["task"],
            _when(s),
            _time(s["next_run"]),
            _time(s["last_run"]),
            s["last_job_id"] or "-",
            str(s["runs"]),
        )
    console().print(t)


@schedule.command()
@click.argument("name")
@hub_options
@friendly
def show(name: str, hub_url: str | None, token: str | None, as_json: bool) -> None:
    """Show one schedule. Example: gridq schedule show nightly"""
    out = hub_client(hub_url, token).get(f"/api/schedules/{name}")
    if as_json:
        echo_json(out)
        return
    for k, v in out.items():
        shown = _time(v) if k in ("next_run", "last_run") else v
        click.echo(f"{k:>12}: {json.dumps(shown) if isinstance(shown, dict | list) else shown}")


def _simple(action: str, method: str, path: str, body: dict[str, Any] | None, doc: str) -> None:
    @click.argument("name")
    @hub_options
    @friendly
    def cmd(name: str, hub_url: str | None, token: str | None, as_json: bool) -> None:
        out = hub_client(hub_url, token).request(method, path.format(name=name), json=body)
        if as_json:
            echo_json(out or {"name": name, action: True})
        elif action == "run":
            click.echo(f"run: {name} pushed job {out['job_id']}")
        else:
            click.echo(f"{action}: {name}")

    cmd.__doc__ = doc
    schedule.command(action)(cmd)


_simple("pause", "PATCH", "/api/schedules/{name}", {"paused": True}, "Pause a schedule: no ticks.")
_simple(
    "resume",
    "PATCH",
    "/api/schedules/{name}",
    {"paused": False},
    "Resume a schedule: ticks start again with the next one after now.",
)
_simple("delete", "DELETE", "/api/schedules/{name}", None, "Delete a schedule.")
_simple("run", "POST", "/api/schedules/{name}/run", None, "Push one job now (ticks unchanged).")


# --- apply ----------------------------------------------------------------------------


def load_file(path: Path) -> list[dict[str, Any]]:
    """A TOML file of ``[[schedule]]`` tables, or JSON: a list or ``{"schedule": [...]}``."""
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        fail(f"{path}: cannot parse: {exc}")
    if isinstance(data, dict):
        data = data.get("schedule", data.get("schedules"))
    if not isinstance(data, list) or not all(isinstance(x, dict) and "name" in x for x in data):
        fail(f"{path}: expected a list of schedules, each with a name")
    names = [x["name"] for x in data]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        fail(f"{path}: schedule names appear twice: {', '.join(dup)}")
    return data


def _payload(p: Any) -> Any:
    if not isinstance(p, dict):
        return p
    if p.get("item") is not None:
        return {"item": p["item"]}
    job = p.get("job")
    if isinstance(job, dict):
        return {
            "job": {
                "task": job.get("task"),
                "args": job.get("args", []),
                "kwargs": job.get("kwargs", {}),
            }
        }
    return p


def normalised(s: dict[str, Any]) -> dict[str, Any]:
    """The schedule's own fields, defaults filled: what apply compares."""
    out = {
        **DEFAULTS,
        **{k: v for k, v in s.items() if k in DEFAULTS or k in ("name", "task", "payload")},
    }
    out["payload"] = _payload(out.get("payload"))
    out["jitter"] = float(out["jitter"] or 0)
    return out


@schedule.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option(
    "--keep-others",
    is_flag=True,
    help="Do not delete schedules the file does not name (default: the file is the whole set).",
)
@hub_options
@friendly
def apply(
    file: Path,
    dry_run: bool,
    keep_others: bool,
    hub_url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Make the hub's schedules match FILE: create, update, delete (idempotent).

    \b
    Example schedules.toml:
      [[schedule]]
      name = "nightly"
      task = "reports"
      cron = "0 3 * * *"
      timezone = "Europe/Berlin"
      payload = { job = { task = "build_report", args = ["daily"] } }
    """
    wanted = {s["name"]: normalised(s) for s in load_file(file)}
    hub = hub_client(hub_url, token)
    have = {s["name"]: normalised(s) for s in hub.get("/api/schedules")}
    done: dict[str, list[str]] = {"created": [], "updated": [], "deleted": [], "unchanged": []}
    for name, spec in wanted.items():
        if name not in have:
            done["created"].append(name)
            if not dry_run:
                hub.post("/api/schedules", json={k: v for k, v in spec.items() if v is not None})
        elif spec != have[name]:
            done["updated"].append(name)
            if not dry_run:
                changes = {k: v for k, v in spec.items() if k != "name" and v != have[name].get(k)}
                hub.request("PATCH", f"/api/schedules/{name}", json=changes)
        else:
            done["unchanged"].append(name)
    for name in sorted(set(have) - set(wanted)):
        if keep_others:
            continue
        done["deleted"].append(name)
        if not dry_run:
            hub.request("DELETE", f"/api/schedules/{name}")
    if as_json:
        echo_json({**done, "dry_run": dry_run, "at": time.time()})
        return
    for what, names in done.items():
        for n in names:
            click.echo(f"{what}: {n}" + (" (dry run)" if dry_run and what != "unchanged" else ""))
