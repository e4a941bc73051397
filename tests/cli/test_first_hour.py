"""A newcomer's first-hour mistakes (#19), each answered by a message that names it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from cli_helpers import user_env

from gridq.localstack import Stack
from gridq.ports import free_port


def gridq(*args: str, state: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridq.cli.main", *args],
        capture_output=True,
        text=True,
        env=user_env(state),
        timeout=timeout,
    )


def test_a_node_without_a_token_stops_at_once(tmp_path: Path) -> None:
    # Nothing listens at the hub URL: the node must not get as far as trying it.
    hub = f"http://127.0.0.1:{free_port()}"
    base = ("node", "--runtime", "process", "--hub-url", hub)
    for extra in ((), ("--token", ""), ("--token", "   ")):
        r = gridq(*base, *extra, "--state-dir", str(tmp_path / "node"), state=tmp_path)
        assert r.returncode == 2, (extra, r.stderr)
        assert "no node token: set GRIDQ_NODE_TOKEN or --token" in r.stderr
        assert "Traceback" not in r.stderr


def _hold_every_slot(stack: Stack) -> str:
    """Register a task whose sleeping workers take every slot of the stack's node."""
    with stack.admin() as hub:
        deadline = time.monotonic() + 30
        nodes: list[dict] = []
        while not nodes and time.monotonic() < deadline:
            nodes = [n for n in hub.get("/api/nodes").json() if n["status"] == "online"]
            time.sleep(0.2)
        assert nodes, "the stack's node never came online"
        slots = int(nodes[0]["parallelism"])
        body = {
            "name": "leftover",
            "command": ["sleep", "600"],
            "input_redis": stack.redis_url,
            "input_queue": "leftover",
            "replicas": slots,
        }
        assert hub.post("/api/tasks", json=body).status_code < 300
        while time.monotonic() < deadline:
            inst = hub.get("/api/tasks/leftover").json().get("instances") or {}
            if inst.get("running") == slots:
                return "leftover"
            time.sleep(0.2)
    raise AssertionError("the leftover task never filled the node")


def test_demo_runs_despite_a_leftover_state_folder(tmp_path: Path, redis_binary: str) -> None:
    state = tmp_path / "state"
    old = Stack(state=state)
    old.start()
    try:
        _hold_every_slot(old)
    finally:
        old.stop()  # its Redis keeps the task: the folder now holds tasks from before
    r = gridq("up", "--demo", "--jobs", "300", "--state-dir", str(state), state=state, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert re.search(r"│\s+300 │\s+300 │", r.stdout), r.stdout  # jobs, done
    assert f"state    {state / 'demo'}" in r.stdout
    # The main stack's tasks were left alone.
    again = Stack(state=state)
    again.start()
    try:
        with again.admin() as hub:
            assert [t["name"] for t in hub.get("/api/tasks").json()] == ["leftover"]
    finally:
        again.stop()


def test_doctor_names_an_unreachable_queue_redis(tmp_path: Path) -> None:
    refused = f"redis://:s3cretPW@127.0.0.1:{free_port()}/0"
    unknown = "redis://:s3cretPW@no-such-host.invalid:6379/0"
    for url, saw, fix in (
        (refused, "refused the connection", "Start Redis"),
        (unknown, "does not resolve", "host name"),
    ):
        r = gridq("doctor", "--queue", "jobs", "--redis-url", url, "--json", state=tmp_path)
        assert r.returncode == 1, r.stderr
        assert "s3cretPW" not in r.stdout + r.stderr
        checks = json.loads(r.stdout)["checks"]
        row = next(c for c in checks if c["name"] == "redis.reachable")
        masked = url.replace("s3cretPW", "***")
        assert row["status"] == "fail" and masked in row["target"] and masked in row["saw"]
        assert saw in row["saw"] and fix in row["fix"]
        # The table too, not a one-line error with the URL left blank.
        r = gridq("doctor", "--queue", "jobs", "--redis-url", url, state=tmp_path)
        assert r.returncode == 1 and "redis.reachable" in r.stdout and "error:" not in r.stderr
