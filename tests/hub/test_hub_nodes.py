"""Node protocol and admin node view: auth scopes, resume, 401/410, offline, stop, leave,
metrics and Prometheus service discovery."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from hub_helpers import (
    ADMIN,
    ADMIN_H,
    JOIN,
    JOIN_H,
    heartbeat,
    node_info,
    periodic_pass,
    register,
    task_body,
)

from gridq.hub import auth

ADMIN_PATHS = [
    ("get", "/api/tasks"),
    ("get", "/api/nodes"),
    ("get", "/metrics"),
    ("get", "/api/prometheus/targets"),
    ("get", "/api/events"),
    ("post", "/api/tasks/next"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_PATHS)
def test_admin_api_needs_admin_token(client: TestClient, method: str, path: str) -> None:
    assert getattr(client, method)(path).status_code == 401
    assert (
        getattr(client, method)(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    # The node join token is recognised, and refused.
    r = getattr(client, method)(path, headers=JOIN_H)
    assert r.status_code == 403 and "join token" in r.json()["detail"]
    nid, secret = register(client)
    assert (
        getattr(client, method)(path, headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )
    assert getattr(client, method)(path, headers=ADMIN_H).status_code in (200, 409)


def test_health_needs_no_token(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_health_503_without_redis(make_client: Callable[..., TestClient]) -> None:
    c = make_client(redis_url="redis://127.0.0.1:1/0")
    r = c.get("/health")
    assert r.status_code == 503 and r.json()["redis"] == "unreachable"
    # Other endpoints answer 503 too, not a stack trace.
    assert c.get("/api/tasks", headers=ADMIN_H).status_code == 503


def test_register_needs_join_token(client: TestClient) -> None:
    body = {"info": node_info()}
    assert client.post("/api/node/register", json=body).status_code == 401
    assert client.post("/api/node/register", json=body, headers=ADMIN_H).status_code == 401
    r = client.post("/api/node/register", json=body, headers=JOIN_H)
    assert r.status_code == 200
    assert r.json()["node_id"].startswith("box1-") and len(r.json()["secret"]) >= 32


def test_register_validates_body(client: TestClient) -> None:
    r = client.post("/api/node/register", json={"info": node_info(runtime="vm")}, headers=JOIN_H)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "info.runtime"
    r = client.post("/api/node/register", json={"info": node_info(), "x": 1}, headers=JOIN_H)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "x"
    r = client.post(
        "/api/node/register", json={"info": node_info(), "protocol": 99}, headers=JOIN_H
    )
    assert r.status_code == 422


def test_secret_stored_hashed(client: TestClient, redis_conn: redis.Redis) -> None:
    nid, secret = register(client)
    stored = redis_conn.get(f"gridq:{{hub}}:node:{nid}:secret").decode()
    assert stored != secret and len(stored) == 64
    dump = b"".join(redis_conn.dump(k) or b"" for k in redis_conn.keys("*"))
    assert secret.encode() not in dump


def test_heartbeat_auth(client: TestClient) -> None:
    a, sa = register(client, "a")
    b, sb = register(client, "b")
    assert heartbeat(client, a, sa).status_code == 200
    # Another node's secret, the join token, the admin token: all 401.
    for wrong in (sb, JOIN, ADMIN, "x" * 43):
        r = heartbeat(client, a, wrong)
        assert r.status_code == 401, wrong
    assert heartbeat(client, "unknown-node", sa).status_code == 401
    assert heartbeat(client, "../etc", sa).status_code in (401, 404)
    r = client.post(f"/api/node/{a}/heartbeat", json={"info": node_info()})
    assert r.status_code == 401


def test_constant_time_compare_is_used(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = auth.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    from gridq.hub.store import nodes as store_nodes

    monkeypatch.setattr(store_nodes.hmac, "compare_digest", spy)
    client.get("/api/tasks", headers=ADMIN_H)
    assert calls
    calls.clear()
    nid, secret = register(client)
    calls.clear()
    # Node calls: `leave` (and resuming at registration) compare in Python; a heartbeat
    # compares inside its Lua script (auth and write in one round trip), without an
    # early exit: every byte of the hash is XORed in.
    assert (
        client.post(f"/api/node/{nid}/leave", headers={"Authorization": "Bearer x"}).status_code
        == 401
    )
    assert calls
    calls.clear()
    assert heartbeat(client, nid, secret).status_code == 200
    # Only the exact secret passes, whichever byte differs (first, middle, last), and
    # neither a prefix nor an extension of it does.
    bads = [secret[:i] + ("A" if secret[i] != "A" else "B") + secret[i + 1 :] for i in
            (0, len(secret) // 2, len(secret) - 1)] + [secret[:-1], secret + "A", ""]  # fmt: skip
    for bad in bads:
        assert heartbeat(client, nid, bad).status_code == 401, bad
    assert heartbeat(client, nid, secret).status_code == 200
    # The heartbeat compared inside its script, not in Python.
    assert calls == []


def test_resume_and_no_takeover(client: TestClient) -> None:
    nid, secret = register(client)
    # Restart with the saved id and secret: same identity.
    r = client.post(
        "/api/node/register",
        json={"info": node_info(), "node_id": nid, "secret": secret},
        headers=JOIN_H,
    )
    assert r.json() == {"node_id": nid, "secret": secret, "heartbeat_interval": 1.0}
    # Someone else claiming that id without the secret gets a fresh identity.
    r = client.post(
        "/api/node/register",
        json={"info": node_info("evil"), "node_id": nid, "secret": "guess"},
        headers=JOIN_H,
    )
    assert r.json()["node_id"] != nid and r.json()["secret"] != secret
    assert heartbeat(client, nid, secret).status_code == 200


def test_deleted_node_gets_410_and_can_rejoin(client: TestClient) -> None:
    nid, secret = register(client)
    assert client.delete(f"/api/nodes/{nid}", headers=ADMIN_H).status_code == 204
    r = heartbeat(client, nid, secret)
    assert r.status_code == 410 and "register again" in r.json()["detail"]
    assert (
        client.post(
            f"/api/node/{nid}/leave", headers={"Authorization": f"Bearer {secret}"}
        ).status_code
        == 410
    )
    assert client.get(f"/api/nodes/{nid}", headers=ADMIN_H).status_code == 404
    assert client.delete(f"/api/nodes/{nid}", headers=ADMIN_H).status_code == 404
    # Resuming a deleted id is refused: a new id.
    r = client.post(
        "/api/node/register",
        json={"info": node_info(), "node_id": nid, "secret": secret},
        headers=JOIN_H,
    )
    assert r.json()["node_id"] != nid


def test_only_own_assignments(client: TestClient, redis_url: str) -> None:
    client.post("/api/tasks", json=task_body(redis_url, replicas=1), headers=ADMIN_H)
    client.post(
        "/api/tasks",
        json=task_body(redis_url, name="other", replicas=1, constraints={"labels": {"gpu": "1"}}),
        headers=ADMIN_H,
    )
    a, sa = register(client, "a")
    b, sb = register(client, "b", labels={"gpu": "1"})
    ta = {x["task"] for x in heartbeat(client, a, sa).json()["assignments"]}
    tb = {x["task"] for x in heartbeat(client, b, sb, labels={"gpu": "1"}).json()["assignments"]}
    assert "other" not in ta and "other" in tb
    assert ta | tb == {"square", "other"}


def test_first_heartbeat_has_assignments_and_spread(client: TestClient, redis_url: str) -> None:
    def replicas(nid: str, secret: str) -> dict[str, int]:
        answer = heartbeat(client, nid, secret).json()["assignments"]
        return {x["task"]: x["replicas"] for x in answer}

    a, sa = register(client, "a")
    b, sb = register(client, "b")
    client.post("/api/tasks", json=task_body(redis_url, replicas=4), headers=ADMIN_H)
    # The next heartbeat of each node carries its share: the 4 replicas spread 2 and 2.
    assert (replicas(a, sa), replicas(b, sb)) == ({"square": 2}, {"square": 2})
    # A node joining later gets none: stable placement leaves running replicas in place.
    c, sc = register(client, "c")
    assert replicas(c, sc) == {}
    assert (replicas(a, sa), replicas(b, sb)) == ({"square": 2}, {"square": 2})


def test_register_answer_carries_assignments_when_asked(client: TestClient, redis_url: str) -> None:
    client.post("/api/tasks", json=task_body(redis_url, replicas=2), headers=ADMIN_H)
    body = {"info": node_info("a")}
    r = client.post("/api/node/register?assignments=true", json=body, headers=JOIN_H)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    reg = r.json()
    assert [(x["task"], x["replicas"]) for x in reg["assignments"]] == [("square", 2)]
    # The same assignments and version the first heartbeat answers with.
    hb = heartbeat(client, reg["node_id"], reg["secret"]).json()
    assert reg["assignments"] == hb["assignments"]
    assert reg["spec_version"] == hb["spec_version"]
    # Resuming asks the same way and gets the same work back.
    r = client.post(
        "/api/node/register?assignments=true",
        json={**body, "node_id": reg["node_id"], "secret": reg["secret"]},
        headers=JOIN_H,
    )
    assert r.json()["node_id"] == reg["node_id"] and r.json()["assignments"] == hb["assignments"]
    # Without asking: the answer older agents validate strictly, not one field more.
    r = client.post("/api/node/register", json={"info": node_info("b")}, headers=JOIN_H)
    assert set(r.json()) == {"node_id", "secret", "heartbeat_interval"}
    # Nothing placed on this node (b came after a took both replicas): an empty list.
    r = client.post(
        "/api/node/register?assignments=1", json={"info": node_info("c")}, headers=JOIN_H
    )
    assert r.json()["assignments"] == [] and isinstance(r.json()["spec_version"], int)


def test_node_view_shows_the_nodes_metrics_url(client: TestClient) -> None:
    url = "http://10.1.2.3:9300/metrics"
    nid, secret = register(client, "a", metrics_url=url)
    bare, _ = register(client, "b")
    nodes = {n["node_id"]: n for n in client.get("/api/nodes", headers=ADMIN_H).json()}
    assert nodes[nid]["metrics_url"] == url and nodes[bare]["metrics_url"] is None
    assert client.get(f"/api/nodes/{nid}", headers=ADMIN_H).json()["metrics_url"] == url
    # The last heartbeat's value wins (the agent's port may change across restarts).
    heartbeat(client, nid, secret, metrics_url="http://10.1.2.3:9301/metrics")
    got = client.get(f"/api/nodes/{nid}", headers=ADMIN_H).json()["metrics_url"]
    assert got == "http://10.1.2.3:9301/metrics"


def _instances(task: str, n: int, state: str = "running", **kw: Any) -> list[dict[str, Any]]:
    return [
        {
            "instance_id": f"i-{task}-{i}",
            "task": task,
            "index": i,
            "spec_hash": "h",
            "state": state,
            **kw,
        }
        for i in range(n)
    ]


def test_node_view_errors_and_instances(client: TestClient, redis_url: str) -> None:
    client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H)
    nid, secret = register(client)
    inst = _instances("square", 1) + [
        {
            "instance_id": "i-x",
            "task": "square",
            "index": 1,
            "spec_hash": "h",
            "state": "crashloop",
            "exit_code": 77,
            "restarts": 3,
            "error": "Redis rejected the credentials (WRONGPASS)",
        }
    ]
    r = client.post(
        f"/api/node/{nid}/heartbeat",
        json={"info": node_info(), "instances": inst, "errors": ["disk almost full"]},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 200
    n = client.get(f"/api/nodes/{nid}", headers=ADMIN_H).json()
    assert (
        n["status"] == "online" and n["running"] == {"square": 1} and n["assigned"] == {"square": 2}
    )
    assert "disk almost full" in n["errors"]
    assert any("WRONGPASS" in e and "crashloop" in e for e in n["errors"])
    t = client.get("/api/tasks/square", headers=ADMIN_H).json()
    assert t["instances"]["running"] == 1 and t["instances"]["by_node"] == {nid: 1}


def test_offline_after_three_missed_heartbeats(
    client: TestClient, redis_url: str, redis_conn: redis.Redis
) -> None:
    client.post("/api/tasks", json=task_body(redis_url, replicas=2), headers=ADMIN_H)
    a, sa = register(client, "a")
    b, sb = register(client, "b")
    # interval 1 s in tests: 3.5 s without a heartbeat is offline, counted from when the
    # hub started listening (a fresh hub does not blame nodes for its own downtime).
    client.app.state.store.nodes.listening_since = time.time() - 3.5  # type: ignore[attr-defined]
    redis_conn.zadd("gridq:{hub}:node_seen", {a: time.time() - 3.5})
    nodes = {n["node_id"]: n for n in client.get("/api/nodes", headers=ADMIN_H).json()}
    assert nodes[a]["status"] == "offline" and nodes[b]["status"] == "online"
    assert "offline" in nodes[a]["errors"][0]
    periodic_pass(client)
    assert heartbeat(client, b, sb).json()["assignments"][0]["replicas"] == 2
    # Kept until deleted; back online on its next heartbeat.
    assert heartbeat(client, a, sa).status_code == 200
    assert client.get(f"/api/nodes/{a}", headers=ADMIN_H).json()["status"] == "online"


def test_a_restarted_hub_does_not_blame_nodes_for_its_downtime(
    client: TestClient, make_client: Callable[..., TestClient], redis_conn: redis.Redis
) -> None:
    a, _ = register(client, "a")
    # The node's last heartbeat is 10 s old because no hub was listening (hub restart).
    redis_conn.zadd("gridq:{hub}:node_seen", {a: time.time() - 10})
    fresh = make_client()
    assert fresh.get(f"/api/nodes/{a}", headers=ADMIN_H).json()["status"] == "online"
    # Once the fresh hub has listened for offline_after (3 intervals), silence counts.
    fresh.app.state.store.nodes.listening_since = time.time() - 3.5  # type: ignore[attr-defined]
    assert fresh.get(f"/api/nodes/{a}", headers=ADMIN_H).json()["status"] == "offline"


def test_stop_drain_leave(client: TestClient, redis_url: str) -> None:
    client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H)
    nid, secret = register(client)
    assert heartbeat(client, nid, secret).json()["stop"] is False
    r = client.post(f"/api/nodes/{nid}/stop", headers=ADMIN_H)
    assert r.status_code == 200
    hb = heartbeat(client, nid, secret).json()
    assert hb["stop"] is True and hb["assignments"] == []
    assert client.get(f"/api/nodes/{nid}", headers=ADMIN_H).json()["status"] == "stopping"
    r = client.post(f"/api/node/{nid}/leave", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 204
    assert client.get(f"/api/nodes/{nid}", headers=ADMIN_H).json()["status"] == "left"
    assert client.post("/api/nodes/nope/stop", headers=ADMIN_H).status_code == 404


def test_draining_node_gets_no_new_work(client: TestClient, redis_url: str) -> None:
    a, sa = register(client, "a")
    r = client.post(
        f"/api/node/{a}/heartbeat",
        json={"info": node_info("a"), "draining": True},
        headers={"Authorization": f"Bearer {sa}"},
    )
    assert r.status_code == 200
    client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H)
    assert heartbeat(client, a, sa).json()["assignments"] == []


def test_metrics(client: TestClient, redis_url: str, redis_conn: redis.Redis) -> None:
    client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H)
    redis_conn.lpush("square-in", "1", "2")
    redis_conn.hset("gridq:q:{square-in}:stats", mapping={"processed": 7, "failed": 2})
    nid, secret = register(client)
    heartbeat(client, nid, secret, instances=_instances("square", 1))
    text = client.get("/metrics", headers=ADMIN_H).text
    for line in (
        'gridq_hub_nodes{status="online"} 1.0',
        'gridq_task_instances{state="desired",task="square"} 2.0',
        'gridq_task_instances{state="running",task="square"} 1.0',
        'gridq_queue_depth{task="square"} 2.0',
        'gridq_task_processed_total{task="square"} 7.0',
        'gridq_task_failed_total{task="square"} 2.0',
        'gridq_task_dead{task="square"} 0.0',
        'gridq_queue_oldest_age_seconds{task="square"}',
        "gridq_hub_request_duration_seconds_bucket{",
        'route="/api/node/{node_id}/heartbeat"',
    ):
        assert line in text, line


def test_prometheus_targets(client: TestClient) -> None:
    nid, secret = register(client)
    inst = _instances("square", 2, metrics_url="http://10.1.2.3:9101/metrics")
    inst[1]["metrics_url"] = "http://10.1.2.3:9102/custom"
    inst += _instances("other", 1, state="exited", metrics_url="http://10.1.2.3:9200/metrics")
    inst[2]["instance_id"] = "i-other-x"
    heartbeat(client, nid, secret, instances=inst)
    groups = client.get("/api/prometheus/targets", headers=ADMIN_H).json()
    assert groups == [
        {
            "targets": ["10.1.2.3:9101"],
            "labels": {"task": "square", "node": nid, "instance_id": "i-square-0"},
        },
        {
            "targets": ["10.1.2.3:9102"],
            "labels": {
                "task": "square",
                "node": nid,
                "instance_id": "i-square-1",
                "__metrics_path__": "/custom",
            },
        },
    ]


def test_events(client: TestClient, redis_url: str) -> None:
    client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H)
    ev = client.get("/api/events", headers=ADMIN_H).json()
    assert ev and "square registered" in ev[0]["event"]
