"""A live grid for the browser tests: the real hub and a process node as subprocesses
(``gridq hub``, ``gridq node --runtime process``), a task whose workers run the demo app,
and some dead letters (items the demo's handler cannot parse)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from ui_helpers import ADMIN, ADMIN_H, JOIN, VIEWER

from gridq.ports import free_port
from gridq.queue import Queue
from tests.support import wait_for as support_wait_for

GRIDQ = [sys.executable, "-m", "gridq.cli.main"]
TASK = "demo"
QUEUE = "demo-in"
GOOD_JOBS = 300
BAD_JOBS = 7


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """tests.support's wait_for, a page or API answer that is not there yet counting as not yet."""
    transient = (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError)
    return support_wait_for(check, timeout, 0.2, what, ignoring=transient)


class LiveStack:
    def __init__(self, redis_url: str, workdir: Path) -> None:
        self.redis_url = redis_url
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        full = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
        full.update(env)
        self.procs[name] = subprocess.Popen(
            args, env=full, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def api(self, token: str = ADMIN) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def task(self) -> dict[str, Any]:
        with self.api() as c:
            body: dict[str, Any] = c.get(f"/api/tasks/{TASK}").json()
            return body

    def node(self) -> dict[str, Any]:
        with self.api() as c:
            nodes: list[dict[str, Any]] = c.get("/api/nodes").json()
            return nodes[0]

    def start(self) -> None:
        self._spawn(
            "hub",
            [*GRIDQ, "hub", "--bind", f"127.0.0.1:{self.port}"],
            {
                "GRIDQ_HUB_REDIS_URL": self.redis_url,
                "GRIDQ_HUB_TOKEN": ADMIN,
                "GRIDQ_HUB_VIEWER_TOKEN": VIEWER,
                "GRIDQ_NODE_TOKEN": JOIN,
                "GRIDQ_HUB_HEARTBEAT_INTERVAL": "1",
            },
        )
        wait_for(lambda: httpx.get(f"{self.url}/health").status_code == 200, what="the hub")
        self._spawn(
            "node",
            [*GRIDQ, "node", "--runtime", "process"],
            {
                "GRIDQ_HUB_URL": self.url,
                "GRIDQ_NODE_TOKEN": JOIN,
                "GRIDQ_NODE_STATE_DIR": str(self.workdir / "node"),
                "GRIDQ_NODE_METRICS_BIND": f"127.0.0.1:{free_port()}",
            },
        )
        wait_for(lambda: self.node()["status"] == "online", what="the node")
        with self.api() as c:
            r = c.post(
                "/api/tasks",
                json={
                    "name": TASK,
                    "command": [*GRIDQ, "worker", "gridq.examples.demo:app"],
                    "input_redis": self.redis_url,
                    "input_queue": QUEUE,
                    "output_queue": "demo-out",
                    "replicas": 2,
                },
            )
            assert r.status_code == 201, r.text
            # A second task, paused with jobs waiting: more than one status on the pages.
            r = c.post(
                "/api/tasks",
                json={
                    "name": "resize",
                    "command": [*GRIDQ, "worker", "gridq.examples.demo:app"],
                    "input_redis": self.redis_url,
                    "input_queue": "resize-in",
                    "replicas": 1,
                },
            )
            assert r.status_code == 201, r.text
            assert c.post("/api/tasks/resize/pause").status_code == 200
        waiting = Queue.from_url(self.redis_url, "resize-in")
        for n in range(25):
            waiting.enqueue("primes_below", 1000 + n)
        q = Queue.from_url(self.redis_url, QUEUE)
        q.push_raw(*[str(i).encode() for i in range(GOOD_JOBS)])
        q.push_raw(*[f"not-a-number-{i}".encode() for i in range(BAD_JOBS)])
        wait_for(
            lambda: (f := self.task()["live"]) and f["dead"] == BAD_JOBS and f["depth"] == 0,
            what="the jobs to run and the bad ones to die",
        )
        wait_for(lambda: self.task()["instances"]["running"] == 2, what="2 running instances")

    def stop(self) -> None:
        for name in ("node", "hub"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]


__all__ = ["ADMIN_H", "LiveStack", "wait_for"]
