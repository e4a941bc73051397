"""`gridq push --task --wait`, `gridq job show` and `gridq job cancel` (issue #14), through
the real console entry point, a real hub (uvicorn on a thread) and a real worker."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from gridq.hub.main import create_app
from gridq.queue import Queue
from gridq.worker import App
from gridq.worker.settings import WorkerSettings
from gridq.worker.worker import Worker
from tests.cli.test_queue_commands import run
from tests.support import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))
from hub_helpers import ADMIN, ADMIN_H, settings_for, task_body  # noqa: E402


@pytest.fixture
def hub(redis_conn, redis_url: str) -> Iterator[str]:
    port = free_port()
    app = create_app(settings_for(redis_url=redis_url), background=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 20
    while not server.started and time.monotonic() < end:
        time.sleep(0.05)
    assert server.started
    yield url
    server.should_exit = True
    t.join(10)


def test_push_wait_and_job_commands(hub: str, redis_url: str) -> None:
    assert (
        httpx.post(
            f"{hub}/api/tasks", json=task_body(redis_url, "add"), headers=ADMIN_H
        ).status_code
        == 201
    )
    app = App(input_url=redis_url, input_queue="add-in")

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    w = Worker(app, WorkerSettings(worker_lease_seconds=2.0), install_signals=False)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    try:
        r = run(
            "push",
            "add-in",
            "--task",
            "add",
            "--wait",
            "[2, 3]",
            "[4, 5]",
            "--redis-url",
            redis_url,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["5", "9"]
    finally:
        w._signals = 1
        t.join(15)
    hub_env = {"GRIDQ_HUB_URL": hub, "GRIDQ_HUB_TOKEN": ADMIN}
    q = Queue.from_url(redis_url, "add-in")
    done = q.enqueue("add", 1, 1)  # no worker now: it waits
    r = run("job", "show", done.id, "--task", "add", "--json", env=hub_env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "queued"
    r = run("job", "cancel", done.id, "--task", "add", env=hub_env)
    assert r.returncode == 0 and "cancelled" in r.stdout, r.stderr
    r = run("job", "show", done.id, "--task", "add", env=hub_env)
    assert "cancelled" in r.stdout
    r = run("job", "show", "nope", "--task", "add", env=hub_env)
    assert r.returncode != 0 and "404" in r.stderr
