"""Node agent benchmark: time from task registration to first result, and idle cost.

    python -m bench.node_startup [--runtime docker|process] [--runs 3] [--idle 10]

Starts its own redis-server, a real hub (`gridq hub`) and a real agent (`gridq node`),
then, per run: LPUSH one raw job, POST /api/tasks, and waits for the result in the output
queue. The docker runtime uses gridq-worker:test (scripts/build-test-images.sh worker;
present locally, so no pull is timed) on the host network. Afterwards the task is
deleted and the agent's CPU and RSS are sampled while it idles with one heartbeat a second.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from gridq.ports import free_port
from tests.support import RedisServer, redis_server_binary, wait_for

BIN = Path(sys.executable).parent
GRIDQ = str(BIN / "gridq")
APP = "from gridq.worker import App\napp = App()\n\n@app.default\ndef echo(item: bytes):\n    return item\n"


def wait(cond: Any, timeout: float = 30.0) -> Any:
    # Polled every 5 ms: the figure is a start-up time, so the poll must not round it.
    return wait_for(cond, timeout, 0.005)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", choices=["docker", "process"], default="process")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle sampling")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gridq-bench-node-"))
    (work / "echoapp.py").write_text(APP)
    hport = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    admin, join = secrets.token_hex(16), secrets.token_hex(16)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
    server: RedisServer | None = None
    try:
        binary = redis_server_binary()
        if not binary:
            raise SystemExit("no redis-server (apt-get install redis-server)")
        server = RedisServer(binary, work)
        server.start()
        rurl = server.url
        r = server.client()
        hub_env = dict(
            base_env,
            GRIDQ_HUB_REDIS_URL=rurl,
            GRIDQ_HUB_TOKEN=admin,
            GRIDQ_NODE_TOKEN=join,
            GRIDQ_HUB_HEARTBEAT_INTERVAL="1",
            GRIDQ_HUB_LOG_LEVEL="warning",
        )
        procs.append(
            subprocess.Popen(
                [GRIDQ, "hub", "--bind", f"127.0.0.1:{hport}"],
                env=hub_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        hub = f"http://127.0.0.1:{hport}"
        wait(lambda: _get(hub + "/health"))
        node_env = dict(
            base_env,
            GRIDQ_HUB_URL=hub,
            GRIDQ_NODE_TOKEN=join,
            GRIDQ_NODE_STATE_DIR=str(work / "node"),
            GRIDQ_NODE_RUNTIME=args.runtime,
            GRIDQ_NODE_METRICS_BIND="127.0.0.1:0",
            GRIDQ_NODE_STOP_TIMEOUT="5",
            GRIDQ_NODE_DOCKER_NETWORK="host",
            PATH=f"{BIN}:{os.environ.get('PATH', '')}",
        )
        agent = subprocess.Popen(
            [GRIDQ, "node", "--log-level", "warning"],
            env=node_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=work,
        )
        procs.append(agent)
        http = httpx.Client(base_url=hub, headers={"Authorization": f"Bearer {admin}"})
        wait(lambda: http.get("/api/nodes").json())
        times = []
        for i in range(args.runs):
            name = f"bench-{i}"
            r.lpush(f"in-{i}", b"hello")
            body: dict[str, object] = {
                "name": name,
                "input_redis": rurl,
                "input_queue": f"in-{i}",
                "output_queue": f"out-{i}",
                "replicas": 1,
            }
            if args.runtime == "docker":
                body["image"] = "gridq-worker:test"
                body["command"] = [
                    "sh",
                    "-c",
                    "mkdir -p /tmp/a && printf '%s' \"$APP_SRC\" > /tmp/a/echoapp.py && cd /tmp/a && exec gridq worker echoapp:app",
                ]
                body["env"] = {"APP_SRC": APP}
            else:
                body["command"] = [GRIDQ, "worker", "echoapp:app"]
                body["env"] = {"PYTHONPATH": str(work)}
            t0 = time.perf_counter()
            resp = http.post("/api/tasks", json=body)
            resp.raise_for_status()
            wait(lambda i=i: r.llen(f"out-{i}"), timeout=60)
            times.append(time.perf_counter() - t0)
            http.delete(f"/api/tasks/{name}")
        time.sleep(3.0)  # let the workers stop; then the agent idles
        p = psutil.Process(agent.pid)
        c0 = p.cpu_times()
        time.sleep(args.idle)
        c1 = p.cpu_times()
        cpu = (c1.user + c1.system - c0.user - c0.system) / args.idle * 100
        rss = p.memory_info().rss / 2**20
        print(
            f"runtime={args.runtime} registration->first result: "
            f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s "
            f"({args.runs} runs)"
        )
        print(f"agent idle (heartbeat 1 s): CPU {cpu:.2f} % of one core, RSS {rss:.0f} MB")
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _get(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
