"""On `gridq up`'s process-runtime node (#19): a task with only an image is said to be
unrunnable by that runtime (not "no free slot"), and `gridq doctor --node` skips the
Docker checks, saying why."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridq.localstack import Stack
from tests.support.cli import run_gridq

pytestmark = pytest.mark.slow

UNRUNNABLE = "the task has only an image and every online node uses the process runtime, which cannot run images"
DOCKER_CHECKS = ("node.docker", "node.disk", "node.image-arch", "node.network")


def gridq(
    state: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_gridq(*args, state=state, env=env)


@pytest.fixture
def stack(tmp_path: Path, redis_binary: str) -> Iterator[Stack]:
    s = Stack(state=tmp_path / "state")
    s.start()
    yield s
    s.stop()


def _online(stack: Stack) -> list[dict[str, Any]]:
    with stack.admin() as hub:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            nodes = [n for n in hub.get("/api/nodes").json() if n["status"] == "online"]
            if nodes:
                return nodes
            time.sleep(0.2)
    raise AssertionError("the stack's node never came online")


def test_an_image_only_task_on_process_nodes_says_why(stack: Stack) -> None:
    assert {n["runtime"] for n in _online(stack)} == {"process"}
    r = gridq(
        stack.state,
        "task",
        "register",
        "--name",
        "pictures",
        "--image",
        "myorg/squares:1",
        "--input-redis",
        stack.redis_url,
        "--input-queue",
        "pics",
        "--replicas",
        "2",
    )
    assert r.returncode == 0, r.stderr
    assert gridq(stack.state, "push", "pics", "1", "2").returncode == 0

    deadline = time.monotonic() + 30
    shown = ""
    while UNRUNNABLE not in shown and time.monotonic() < deadline:
        shown = gridq(stack.state, "task", "show", "pictures").stdout
        time.sleep(0.3)
    assert UNRUNNABLE in shown and "0/2 placed" in shown, shown
    assert "Give the task a `command`" in shown
    status = gridq(stack.state, "status").stdout
    assert f"task pictures: 0/2 placed: {UNRUNNABLE}" in status, status

    r = gridq(stack.state, "doctor", "pictures", "--json", "--window", "0.2")
    assert r.returncode == 1, r.stdout + r.stderr
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    placement = checks["task.placement"]
    assert placement["status"] == "warn" and UNRUNNABLE in placement["saw"], placement
    assert "no node with a free slot" not in placement["saw"]
    assert "--runtime docker" in placement["fix"]
    listening = checks["task.listening"]  # 2 jobs wait and nobody can ever take them
    assert listening["status"] == "fail", listening
    assert UNRUNNABLE in listening["saw"] and "`command`" in listening["fix"], listening


def _docker_rows(r: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    checks = json.loads(r.stdout)["checks"]
    return {c["name"]: c for c in checks if c["name"] in DOCKER_CHECKS}


def test_doctor_node_on_a_process_node_skips_docker_checks(stack: Stack, tmp_path: Path) -> None:
    _online(stack)
    # The runtime as the hub knows it (the node registered from this machine) ...
    r = gridq(stack.state, "doctor", "--node", "--json", "--window", "0")
    rows = _docker_rows(r)
    assert set(rows) == set(DOCKER_CHECKS), r.stdout
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["saw"].startswith("skipped on the process runtime: "), row
    assert "not in a container network" in rows["node.network"]["saw"]
    # ... or as the agent's own setting says, with no hub at all.
    r = gridq(
        tmp_path / "nothing",
        "doctor",
        "--node",
        "--json",
        env={"GRIDQ_NODE_RUNTIME": "process"},
    )
    rows = _docker_rows(r)
    assert set(rows) == set(DOCKER_CHECKS) and all(
        row["status"] == "ok" and "skipped" in row["saw"] for row in rows.values()
    ), r.stdout
