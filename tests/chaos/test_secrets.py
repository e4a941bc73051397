"""Secret audit: a full scenario (Redis with a password, hub, process-runtime node, worker,
all real processes) with every secret set to a unique marker; then every log line, API
response, /metrics page and CLI output is searched for the markers: zero hits. Worker
environments (/proc/<pid>/environ) are where the Redis URL is meant to be, so not searched.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import redis

from tests.support import wait_for
from tests.support.stack import GRIDQ

pytestmark = pytest.mark.slow

ACL_APP = """
from gridq.worker import App

app = App()


@app.task
def echo(x):
    return x
"""


def acl_task(grid: Any, hub: Any, signing_key: str) -> None:
    """A task with ``redis_acl``: its workers get their own Redis user and a signing key."""
    (grid.tmp / "acl_audit.py").write_text(ACL_APP)
    hub.create_task(
        name="audit-acl",
        command=[GRIDQ, "worker", "acl_audit:app"],
        input_queue="audit-acl-in",
        output_queue="audit-acl-out",
        replicas=1,
        redis_acl=True,
        env={"PYTHONPATH": str(grid.tmp), "GRIDQ_SIGNING_KEY": signing_key},
    )


def push_signed(grid: Any, signing_key: str) -> str:
    """`gridq push --task` with the key: the CLI's output is audited too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
    env["GRIDQ_SIGNING_KEY"] = signing_key
    p = subprocess.run(
        [GRIDQ, "push", "audit-acl-in", "--task", "echo", "[1]", "[2]", "[3]", "[4]"]
        + ["--redis-url", grid.redis_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout + p.stderr


def test_no_secret_anywhere(chaos: ModuleType, tmp_path: Path) -> None:
    grid = chaos.Grid(tmp_path, redis_password=chaos.marker("zqR"), aof=False)
    texts: dict[str, str] = {}
    try:
        grid.start_redis()
        hub = grid.start_hub()
        grid.add_agent(parallelism=3)  # audit, audit-bad, audit-acl
        chaos.create_worker_task(grid, "audit", 1)
        # A second task whose Redis password is wrong: error paths (diagnosis, doctor, logs).
        wrong = grid.redis_url.replace(grid.redis_password, chaos.marker("zqW"))
        chaos.create_worker_task(grid, "audit-bad", 1)
        refused = hub.http.patch("/api/tasks/audit-bad", json={"input_redis": wrong})
        assert refused.status_code == 422
        texts["422 on a wrong password"] = refused.text
        ok = hub.http.patch("/api/tasks/audit-bad?validate=false", json={"input_redis": wrong})
        assert ok.status_code == 200, ok.text
        # Issue 20: a task with its own Redis ACL user, whose workers verify signed jobs.
        signing_key = chaos.marker("zqS")
        acl_task(grid, hub, signing_key)
        wait_for(lambda: len(grid.worker_records()) >= 1, 60)
        node_id = grid.agents[0].node_id()

        def bad_worker_diagnosed() -> dict | None:
            # The failure path under audit: the worker is refused by Redis, exits, and the
            # node's diagnosis reaches the hub as the instance's error.
            return next(
                (i for i in hub.instances(node_id) if i["task"] == "audit-bad" and i.get("error")),
                None,
            )

        bad = wait_for(bad_worker_diagnosed, 90, 0.5, what="audit-bad diagnosed")
        assert "Redis rejected the credentials" in bad["error"], bad
        r = grid.conn()
        r.lpush("audit-in", *[f"a{i}" for i in range(50)], b'{"gridq": 1, "id": 5}')
        texts["gridq push (signed)"] = push_signed(grid, signing_key)
        r.lpush("audit-acl-in", b'{"gridq":1,"id":"unsigned","task":"echo","args":[1]}')
        wait_for(lambda: r.llen("audit-out") >= 50 and r.llen("gridq:q:{audit-in}:dead") == 1, 30)
        wait_for(lambda: r.llen("gridq:q:{audit-acl-in}:dead") == 1, 60)
        wait_for(lambda: r.llen("audit-acl-out") >= 4, 60)
        [dead] = [json.loads(x) for x in r.lrange("gridq:q:{audit-acl-in}:dead", 0, -1)]
        assert (dead["id"], dead["reason"]) == ("unsigned", "bad signature")
        acl_spec = json.loads(r.hget("gridq:{hub}:tasks", "audit-acl") or "{}")["spec"]
        acl_password = redis.connection.parse_url(acl_spec["acl_input_redis"])["password"]
        secrets_ = {
            "redis password": grid.redis_password,
            "wrong redis password": wrong.split(":")[2].split("@")[0],
            "admin token": grid.admin_token,
            "node token": grid.node_token,
            "viewer token": grid.viewer_token,
            "node secret": str(grid.agents[0].identity["secret"]),
            "signing key": signing_key,
            "task ACL password": acl_password,
        }
        wait_for(lambda: any(i.get("metrics_url") for i in hub.instances(node_id)), 30)
        for path in [
            "/api/tasks", "/api/tasks/audit", "/api/tasks/audit-bad", "/api/tasks/audit-acl",
            "/api/nodes",
            f"/api/nodes/{node_id}", "/api/events", "/api/doctor", "/api/prometheus/targets",
            "/metrics", "/health", "/api/audit",
        ]:  # fmt: skip
            resp = hub.http.get(path, timeout=30)
            assert resp.status_code == 200, (path, resp.text)
            texts[f"GET {path}"] = resp.text
        # Refusals carry no secret either (e.g. echoing a wrong token back).
        resp = httpx.get(
            hub.url + "/api/tasks", headers={"Authorization": f"Bearer {grid.node_token}"}
        )
        texts["refusal"] = resp.text
        viewer = {"Authorization": f"Bearer {grid.viewer_token}"}
        resp = httpx.get(hub.url + "/api/audit", headers=viewer)
        assert resp.status_code == 200 and "task.patch" in resp.text, resp.text
        texts["GET /api/audit as viewer"] = resp.text
        resp = httpx.delete(hub.url + "/api/tasks/audit", headers=viewer)
        assert resp.status_code == 403
        texts["viewer refusal"] = resp.text

        healthy_scraped: list[bool] = []

        def scrape_workers() -> bool:
            # The audit-bad worker crash-loops (wrong password), so the hub's last report
            # of it may name a process that has just exited: a refused connection there
            # is expected; the healthy worker must answer.
            for inst in hub.instances(node_id):
                if inst.get("metrics_url") and inst["state"] == "running":
                    try:
                        body = httpx.get(inst["metrics_url"], timeout=10).text
                    except httpx.TransportError:
                        continue
                    texts[f"worker {inst['instance_id']} /metrics"] = body
                    healthy_scraped.append(inst["task"] == "audit")
            return any(healthy_scraped)

        wait_for(scrape_workers, 30)
        node_metrics = f"http://127.0.0.1:{grid.node_metrics_ports[0]}"
        texts["node /metrics"] = httpx.get(node_metrics + "/metrics").text
        texts["node /health"] = httpx.get(node_metrics + "/health").text
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
        env.update(GRIDQ_HUB_URL=hub.url, GRIDQ_HUB_TOKEN=grid.admin_token)
        for cmd in (
            ["status", "--json"], ["task", "list", "--json"], ["doctor", "--json"],
            ["status"], ["doctor"], ["doctor", "--task", "audit-bad"],
        ):  # fmt: skip
            p = subprocess.run([GRIDQ, *cmd], env=env, capture_output=True, text=True, timeout=60)
            texts["gridq " + " ".join(cmd)] = p.stdout + p.stderr
        assert json.loads(texts["gridq status --json"])["tasks"]
    finally:
        grid.close()
    # Logs last: they include the shutdown.
    texts["hub log"] = (tmp_path / "hub.log").read_text(errors="replace")
    texts["node log"] = grid.agents[0].log_path.read_text(errors="replace")
    for name, text in grid.worker_logs().items():
        texts[f"worker log {name}"] = text
    assert "Redis" in texts["hub log"] + texts["node log"]  # the logs are not empty
    hits = [
        (what, where)
        for what, value in secrets_.items()
        for where, text in texts.items()
        if value in text
    ]
    assert not hits, hits
    print(f"searched {len(texts)} texts ({sum(map(len, texts.values()))} chars): 0 hits")
