"""Two real hub processes on one Redis; a process-runtime node lists both
(``GRIDQ_HUB_URL=h1,h2``). SIGKILL the node's hub mid-run: the node moves to the
other one, no worker is restarted (same pids, same instance ids) and every job's
result arrives."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import redis
from test_node_process import alive, records

from gridq.ports import free_port
from tests.support import wait_for
from tests.support.stack import GRIDQ, Hub

pytestmark = pytest.mark.slow

APP = textwrap.dedent(
    """
    import time
    from gridq.worker import App

    app = App()

    @app.default
    def slow(item: bytes):
        time.sleep(0.01)
        return item
    """
)
N_JOBS = 1500
ADMIN_TOKEN = "adm-" + secrets.token_hex(16)
NODE_TOKEN = "nod-" + secrets.token_hex(16)


def _start_hub(redis_url: str, log: Path) -> Hub:
    port = free_port()
    env = dict(os.environ)
    env.update(
        GRIDQ_HUB_REDIS_URL=redis_url,
        GRIDQ_HUB_TOKEN=ADMIN_TOKEN,
        GRIDQ_NODE_TOKEN=NODE_TOKEN,
        GRIDQ_HUB_HEARTBEAT_INTERVAL="0.5",
        GRIDQ_HUB_SCHEDULE_INTERVAL="0.3",
        GRIDQ_HUB_LOG_LEVEL="warning",
    )
    out = open(log, "wb")  # noqa: SIM115 (the hub writes to it until it stops)
    proc = subprocess.Popen(
        [GRIDQ, "hub", "--bind", f"127.0.0.1:{port}"], env=env, stdout=out, stderr=out
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            return httpx.get(url + "/health", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=30)
    return Hub(url, proc, redis_url, ADMIN_TOKEN)


def test_node_moves_to_the_next_hub_without_restarting_workers(
    make_redis: Any, make_agent: Any, tmp_path: Path
) -> None:
    srv = make_redis()
    hubs = [_start_hub(srv.url, tmp_path / f"hub{i}.log") for i in range(2)]
    try:
        first, second = hubs
        r = redis.Redis.from_url(srv.url)
        jobs = [f"job-{i}".encode() for i in range(N_JOBS)]
        r.lpush("hq", *jobs)
        (tmp_path / "hubapp.py").write_text(APP)
        both = SimpleNamespace(url=f"{first.url},{second.url}")
        agent = make_agent(both, runtime="process", heartbeat_interval=0.5, token=NODE_TOKEN)
        node_id = agent.node_id()
        first.create_task(
            name="hubs",
            command=[GRIDQ, "worker", "hubapp:app"],
            replicas=2,
            input_queue="hq",
            output_queue="hout",
            env={"PYTHONPATH": str(tmp_path)},
            concurrency=2,
        )
        wait_for(lambda: r.llen("hout") >= 100, timeout=60)
        before = {rec["instance_id"]: rec["pid"] for rec in records(agent, "hubs")}
        assert len(before) == 2
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        assert r.llen("hout") < N_JOBS, "the kill came too late to prove anything"

        # The surviving hub hears from the node again (it moved) ...
        def heard_by_second() -> bool:
            n = second.node(node_id)
            return bool(n) and n.get("state", n.get("status")) == "online"

        wait_for(lambda: "moving to the hub at " + second.url in agent.log(), timeout=10)
        wait_for(heard_by_second, timeout=10)
        # ... and every job's result arrives, from the same workers.
        wait_for(lambda: r.llen("hout") >= N_JOBS, timeout=120)
        after = {rec["instance_id"]: rec["pid"] for rec in records(agent, "hubs")}
        assert after == before, "a worker was restarted"
        assert all(alive(pid) for pid in after.values())
        assert sorted(r.lrange("hout", 0, -1)) == sorted(jobs)
        assert agent.proc is not None and agent.proc.poll() is None
    finally:
        for h in hubs:
            h.http.close()
            if h.proc.poll() is None:
                h.proc.terminate()
                h.proc.wait(10)
