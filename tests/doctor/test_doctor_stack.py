"""A healthy local stack (what `gridq up` runs) passes `gridq doctor`: exit 0. Then a
real worker whose handler returns nothing makes the output check fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gridq.localstack import Stack
from gridq.queue import Queue

pytestmark = pytest.mark.slow

HANDLERS = """
import time
from gridq.worker import App

app = App()

@app.default
def handle(item):
    if item.startswith(b"quiet"):
        # 1,000 of these keep the worker busy for ~12 s: jobs still finish inside the
        # doctor's window however long its start-up takes on a loaded machine.
        time.sleep(0.1)
        return None
    time.sleep(0.01)
    return item
"""


def doctor(state: Path, *args: str) -> tuple[int, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
    env["GRIDQ_STATE_DIR"] = str(state)
    r = subprocess.run(
        [sys.executable, "-m", "gridq.cli.main", "doctor", "--json", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return r.returncode, json.loads(r.stdout)


def task(stack: Stack, mods: Path, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "command": [sys.executable, "-m", "gridq.cli.main", "worker", "doctor_handlers:app"],
        "env": {"PYTHONPATH": str(mods)},
        "input_redis": stack.redis_url,
        "input_queue": f"{name}-in",
        "output_queue": f"{name}-out",
        "replicas": 1,
    }


def wait_claimed(stack: Stack, queue: str, timeout: float = 30) -> None:
    q = Queue.from_url(stack.redis_url, queue)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if q.stats()["processed"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"no worker processed a job from {queue}")


def test_healthy_local_stack_then_a_worker_that_writes_nothing(tmp_path: Path) -> None:
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "doctor_handlers.py").write_text(HANDLERS)
    state = tmp_path / "stack"
    stack = Stack(state=state, runtime="process")
    try:
        stack.start(timeout=60)
        with stack.admin() as hub:
            assert hub.post("/api/tasks", json=task(stack, mods, "echo")).status_code < 300
        Queue.from_url(stack.redis_url, "echo-in").push_raw(*[f"job{i}" for i in range(20)])
        wait_claimed(stack, "echo-in")
        code, body = doctor(state, "--window", "0.5")
        fails = [c for c in body["checks"] if c["status"] == "fail"]
        assert code == 0, fails
        names = {c["name"] for c in body["checks"]}
        assert {
            "hub.reachable",
            "hub.token",
            "redis.maxmemory-policy",
            "queue.unread",
            "task.listening",
        } <= names
        assert stack.tokens["admin_token"] not in json.dumps(body)

        with stack.admin() as hub:
            assert hub.post("/api/tasks", json=task(stack, mods, "quiet")).status_code < 300
        Queue.from_url(stack.redis_url, "quiet-in").push_raw(*[f"quiet{i}" for i in range(1000)])
        wait_claimed(stack, "quiet-in")
        code, body = doctor(state, "quiet", "--window", "1")
        out = [c for c in body["checks"] if c["name"] == "task.output"]
        assert code == 1 and out and out[0]["status"] == "fail", body
        assert "stays empty" in out[0]["saw"]
    finally:
        stack.stop()
