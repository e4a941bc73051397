"""`gridq schedule` against a real hub process: add/list/pause/run, and apply twice
(the second apply changes nothing), then apply a changed file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hub_helpers import ADMIN, task_body
from hub_procs import HubProc

from gridq import protocol


@pytest.fixture
def hub(redis_url: str, redis_conn: redis.Redis, tmp_path: Path) -> Iterator[HubProc]:
    h = HubProc(redis_url, tmp_path / "hub.log").start()
    r = h.http.post("/api/tasks?validate=false", json=task_body(redis_url, "reports"))
    assert r.status_code == 201, r.text
    yield h
    h.close()


def gridq(hub: HubProc, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GRIDQ_HUB_URL": hub.url, "GRIDQ_HUB_TOKEN": ADMIN}
    return subprocess.run(
        [sys.executable, "-m", "gridq.cli.main", "schedule", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_add_list_pause_run_delete(hub: HubProc, redis_conn: redis.Redis) -> None:
    ok(
        gridq(
            hub,
            "add",
            "nightly",
            "--task",
            "reports",
            "--cron",
            "0 3 * * *",
            "--timezone",
            "Europe/Berlin",
            "--job",
            "build",
            "--args",
            "[1, 2]",
        )
    )
    bad = gridq(hub, "add", "x", "--task", "reports", "--cron", "0 25 * * *", "--item", "i")
    assert bad.returncode != 0 and "cron" in bad.stderr and "Traceback" not in bad.stderr
    listed = json.loads(ok(gridq(hub, "list", "--json")))
    assert [s["name"] for s in listed] == ["nightly"] and listed[0]["next_run"]
    assert "nightly" in ok(gridq(hub, "list"))
    ok(gridq(hub, "pause", "nightly"))
    assert json.loads(ok(gridq(hub, "show", "nightly", "--json")))["paused"] is True
    ok(gridq(hub, "resume", "nightly"))
    out = ok(gridq(hub, "run", "nightly"))
    job = protocol.decode(redis_conn.rpop("reports-in"))  # type: ignore[arg-type]
    assert job.task == "build" and job.args == [1, 2] and job.id in out
    ok(gridq(hub, "delete", "nightly"))
    assert json.loads(ok(gridq(hub, "list", "--json"))) == []


def test_apply_is_idempotent_and_converges(hub: HubProc, tmp_path: Path) -> None:
    ok(gridq(hub, "add", "stray", "--task", "reports", "--every", "60", "--item", "x"))
    toml = tmp_path / "schedules.toml"
    toml.write_text(
        """
[[schedule]]
name = "nightly"
task = "reports"
cron = "0 3 * * *"
timezone = "Europe/Berlin"
payload = { job = { task = "build_report", args = ["daily"] } }

[[schedule]]
name = "ping"
task = "reports"
every = 30
payload = { item = "ping" }
misfire = "once"
"""
    )
    first = json.loads(ok(gridq(hub, "apply", str(toml), "--json")))
    assert sorted(first["created"]) == ["nightly", "ping"] and first["deleted"] == ["stray"]
    second = json.loads(ok(gridq(hub, "apply", str(toml), "--json")))
    assert second["created"] == second["updated"] == second["deleted"] == []
    assert sorted(second["unchanged"]) == ["nightly", "ping"]

    # The same set as JSON, one schedule changed (cron -> every), one gone.
    changed = [
        {
            "name": "nightly",
            "task": "reports",
            "every": 3600,
            "payload": {"job": {"task": "build_report", "args": ["daily"]}},
        }
    ]
    js = tmp_path / "schedules.json"
    js.write_text(json.dumps(changed))
    third = json.loads(ok(gridq(hub, "apply", str(js), "--json")))
    assert third["updated"] == ["nightly"] and third["deleted"] == ["ping"]
    now = {s["name"]: s for s in hub.http.get("/api/schedules").json()}
    assert list(now) == ["nightly"]
    assert now["nightly"]["every"] == 3600 and now["nightly"]["cron"] is None
    assert now["nightly"]["timezone"] == "UTC"  # left out of the file: back to the default
    fourth = json.loads(ok(gridq(hub, "apply", str(js), "--json")))
    assert fourth["unchanged"] == ["nightly"] and fourth["updated"] == []
