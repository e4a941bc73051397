"""The task API against a real Redis: CRUD, validation, masking, persistence."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from hub_helpers import ADMIN_H, heartbeat, periodic_pass, register, task_body

from gridq.queue import Queue
from tests.support import need

# IDM-GridCore ComputeHub's registration body, as its users send it.
IDM_BODY = {
    "name": "square",
    "images": {"linux/amd64": "idm/square:1.0", "linux/arm64": "idm/square:1.0-arm64"},
    "input_redis": "",
    "output_redis": "",
    "input_queue": "numbers",
    "output_queue": "squares",
    "replicas": 2,
    "env": {"LOG_LEVEL": "debug"},
}


def _fields(resp: Any) -> list[str]:
    return [d["field"] for d in resp.json()["detail"]]


def test_idm_gridcore_body_registers_unchanged(client: TestClient, redis_url: str) -> None:
    body = dict(IDM_BODY, input_redis=redis_url, output_redis=redis_url)
    r = client.post("/api/tasks", json=body, headers=ADMIN_H)
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["name"] == "square" and t["images"] == IDM_BODY["images"]
    assert t["replicas"] == 2 and t["status"] == "active" and len(t["spec_hash"]) == 16
    assert t["env"] == {"LOG_LEVEL": "debug"}


def test_duplicate_is_409(client: TestClient, redis_url: str) -> None:
    assert client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H).status_code == 201
    r = client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H)
    assert r.status_code == 409 and "exists" in r.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "x" * 64}, "name"),
        ({"image": "Not A Image!"}, "image"),
        ({"images": {"linux/amd64": "UPPER/case"}}, "images"),
        ({"replicas": -1}, "replicas"),
        ({"replicas": "many"}, "replicas"),
        ({"colour": "blue"}, "colour"),
        ({"resources": {"cpus": 1, "gpus": 2}}, "resources.gpus"),
        ({"constraints": {"zone": "a"}}, "constraints.zone"),
        ({"input_redis": "http://host:6379"}, "input_redis"),
        ({"pool": "greenlets"}, "pool"),
        ({"env": {"INPUT_QUEUE": "x"}}, "env"),
        ({"autoscale": {"min": 5, "max": 2}}, "autoscale"),
    ],
)
def test_invalid_fields_are_named(
    client: TestClient, redis_url: str, change: dict[str, Any], field: str
) -> None:
    r = client.post("/api/tasks", json=task_body(redis_url, **change), headers=ADMIN_H)
    assert r.status_code == 422, r.text
    assert field in _fields(r), r.json()


def test_missing_required_fields(client: TestClient) -> None:
    r = client.post("/api/tasks", json={"name": "x", "image": "a:1"}, headers=ADMIN_H)
    assert r.status_code == 422
    assert {"input_redis", "input_queue"} <= set(_fields(r))
    r = client.post(
        "/api/tasks",
        json={"name": "x", "input_redis": "redis://h", "input_queue": "q"},
        headers=ADMIN_H,
    )
    assert r.status_code == 422 and "image" in r.text


def test_unknown_field_message_names_it(client: TestClient, redis_url: str) -> None:
    r = client.post("/api/tasks", json=task_body(redis_url, gpu=True), headers=ADMIN_H)
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"] == "unknown field 'gpu'"


def test_redis_validation_reasons(client: TestClient, make_redis: Callable[..., Any]) -> None:
    srv = make_redis("s3cretpw")
    good = f"redis://:s3cretpw@127.0.0.1:{srv.port}/0"
    cases = {
        "WRONGPASS": f"redis://:wrongpw@127.0.0.1:{srv.port}/0",
        "NOAUTH": f"redis://127.0.0.1:{srv.port}/0",
        "refused": "redis://:pw@127.0.0.1:1/0",
    }
    for i, (word, url) in enumerate(cases.items()):
        r = client.post("/api/tasks", json=task_body(url, name=f"t{i}"), headers=ADMIN_H)
        assert r.status_code == 422, r.text
        d = r.json()["detail"][0]
        assert d["field"] == "input_redis" and word in d["msg"], d
        assert "wrongpw" not in r.text and "s3cretpw" not in r.text
    # Output checked separately, and named.
    r = client.post(
        "/api/tasks",
        json=task_body(good, name="out", output_redis=cases["WRONGPASS"]),
        headers=ADMIN_H,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "output_redis"
    # validate=false registers offline.
    r = client.post(
        "/api/tasks?validate=false",
        json=task_body(cases["refused"], name="offline"),
        headers=ADMIN_H,
    )
    assert r.status_code == 201
    r = client.post("/api/tasks", json=task_body(good, name="ok"), headers=ADMIN_H)
    assert r.status_code == 201


@pytest.fixture
def tls_listener(tmp_path: Path) -> Iterator[int]:
    """A TLS server with a self-signed certificate: the hub's check must name TLS."""
    if not shutil.which("openssl"):
        need("openssl to make a certificate (apt-get install openssl; .ci/run does)")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=x",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    srv.close()


def test_tls_failure_reason(client: TestClient, tls_listener: int) -> None:
    r = client.post(
        "/api/tasks", json=task_body(f"rediss://:pw@127.0.0.1:{tls_listener}/0"), headers=ADMIN_H
    )
    assert r.status_code == 422
    assert "TLS" in r.json()["detail"][0]["msg"], r.json()


def test_passwords_never_in_responses(
    client: TestClient, make_redis: Callable[..., Any], redis_conn: redis.Redis
) -> None:
    srv = make_redis("hunter2hunter2")
    url = f"redis://default:hunter2hunter2@127.0.0.1:{srv.port}/0"
    body = task_body(url, env={"UPSTREAM": url}, command=["python", "-m", "w", url])
    r = client.post("/api/tasks", json=body, headers=ADMIN_H)
    assert r.status_code == 201, r.text
    assert r.json()["input_redis"] == f"redis://default:***@127.0.0.1:{srv.port}/0"
    texts = [r.text]
    texts.append(client.get("/api/tasks", headers=ADMIN_H).text)
    texts.append(client.get("/api/tasks/square", headers=ADMIN_H).text)
    texts.append(client.patch("/api/tasks/square", json={"replicas": 3}, headers=ADMIN_H).text)
    texts.append(client.get("/metrics", headers=ADMIN_H).text)
    texts.append(client.get("/api/events", headers=ADMIN_H).text)
    texts.append(client.post("/api/tasks", json=body, headers=ADMIN_H).text)  # 409
    bad = dict(body, name="bad", replicas="x")
    texts.append(client.post("/api/tasks", json=bad, headers=ADMIN_H).text)  # 422
    for t in texts:
        assert "hunter2" not in t
    # ... but the node that runs it gets the real URL, and Redis keeps it.
    nid, secret = register(client)
    hb = heartbeat(client, nid, secret).json()
    assert hb["assignments"][0]["spec"]["env"]["INPUT_REDIS_URL"] == url
    assert "hunter2" in redis_conn.hget("gridq:{hub}:tasks", "square").decode()


def test_live_figures_and_rate(client: TestClient, redis_url: str, redis_conn: redis.Redis) -> None:
    assert client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H).status_code == 201
    q = Queue.from_url(redis_url, "square-in")
    q.push_raw("1", "2", "3")
    redis_conn.hset("gridq:q:{square-in}:stats", mapping={"processed": 10, "failed": 1})
    t = client.get("/api/tasks/square", headers=ADMIN_H).json()
    live = t["live"]
    assert (
        live["depth"] == 3
        and live["processed"] == 10
        and live["failed"] == 1
        and live["error"] is None
    )
    assert t["instances"] == {
        "desired": 2,
        "placed": 0,
        "running": 0,
        "by_node": {},
        "unplaced": None,
    }
    # Rate from samples: an old sample of 0 processed 10 s ago -> ~1/s.
    import time

    redis_conn.lpush("gridq:{hub}:task:square:rate", f"{time.time() - 10}:0")
    rate = client.get("/api/tasks/square", headers=ADMIN_H).json()["live"]["rate"]
    assert rate == pytest.approx(1.0, rel=0.1)
    assert client.get("/api/tasks?live=false", headers=ADMIN_H).json()[0]["live"] is None


def test_unreachable_task_redis_shows_error(client: TestClient) -> None:
    body = task_body("redis://:pw@127.0.0.1:1/0")
    assert client.post("/api/tasks?validate=false", json=body, headers=ADMIN_H).status_code == 201
    live = client.get("/api/tasks/square", headers=ADMIN_H).json()["live"]
    assert live["depth"] is None and "refused" in live["error"] and "pw@" not in live["error"]


def test_get_404_and_delete(client: TestClient, redis_url: str) -> None:
    assert client.get("/api/tasks/nope", headers=ADMIN_H).status_code == 404
    assert client.delete("/api/tasks/nope", headers=ADMIN_H).status_code == 404
    client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H)
    nid, secret = register(client)
    assert heartbeat(client, nid, secret).json()["assignments"]
    assert client.delete("/api/tasks/square", headers=ADMIN_H).status_code == 204
    assert client.get("/api/tasks/square", headers=ADMIN_H).status_code == 404
    assert heartbeat(client, nid, secret).json()["assignments"] == []


def test_patch_rolls_over(client: TestClient, redis_url: str) -> None:
    t0 = client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H).json()
    nid, secret = register(client)
    a0 = heartbeat(client, nid, secret).json()
    # Same image name, new tag: a new spec hash (IDM-GridCore only compared names).
    r = client.patch("/api/tasks/square", json={"image": "example/square:2"}, headers=ADMIN_H)
    assert r.status_code == 200 and r.json()["spec_hash"] != t0["spec_hash"]
    a1 = heartbeat(client, nid, secret).json()
    assert a1["spec_version"] > a0["spec_version"]
    assert a1["assignments"][0]["spec"]["image"] == "example/square:2"
    assert a1["assignments"][0]["spec"]["spec_hash"] == r.json()["spec_hash"]
    # replicas only: hash unchanged, count changes.
    r2 = client.patch("/api/tasks/square", json={"replicas": 3}, headers=ADMIN_H)
    assert r2.json()["spec_hash"] == r.json()["spec_hash"]
    assert heartbeat(client, nid, secret).json()["assignments"][0]["replicas"] == 3
    # env changes the hash.
    r3 = client.patch("/api/tasks/square", json={"env": {"A": "1"}}, headers=ADMIN_H)
    assert r3.json()["spec_hash"] != r2.json()["spec_hash"]
    # invalid patch: named, nothing changed.
    r4 = client.patch("/api/tasks/square", json={"name": "other"}, headers=ADMIN_H)
    assert r4.status_code == 422 and "name" in _fields(r4)
    r5 = client.patch("/api/tasks/square", json={"image": None, "images": None}, headers=ADMIN_H)
    assert r5.status_code == 422
    assert client.patch("/api/tasks/nope", json={"replicas": 1}, headers=ADMIN_H).status_code == 404


def test_patch_validates_new_redis(client: TestClient, redis_url: str) -> None:
    client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H)
    r = client.patch(
        "/api/tasks/square", json={"input_redis": "redis://127.0.0.1:1/0"}, headers=ADMIN_H
    )
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "input_redis"


def test_pause_resume(client: TestClient, redis_url: str) -> None:
    client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H)
    nid, secret = register(client)
    assert heartbeat(client, nid, secret).json()["assignments"][0]["replicas"] == 2
    r = client.post("/api/tasks/square/pause", headers=ADMIN_H)
    assert r.status_code == 200 and r.json()["status"] == "paused"
    assert r.json()["instances"]["desired"] == 0
    assert heartbeat(client, nid, secret).json()["assignments"] == []
    r = client.post("/api/tasks/square/resume", headers=ADMIN_H)
    assert r.json()["status"] == "active"
    assert heartbeat(client, nid, secret).json()["assignments"][0]["replicas"] == 2
    assert client.post("/api/tasks/nope/pause", headers=ADMIN_H).status_code == 404


def test_worker_env_contract(client: TestClient, redis_url: str) -> None:
    body = task_body(
        redis_url,
        pool="processes",
        concurrency=8,
        env={"EXTRA": "1"},
        output_redis=redis_url.replace("/0", "/1"),
    )
    client.post("/api/tasks", json=body, headers=ADMIN_H)
    nid, secret = register(client)
    env = heartbeat(client, nid, secret).json()["assignments"][0]["spec"]["env"]
    assert env == {
        "TASK_NAME": "square",
        "INPUT_REDIS_URL": redis_url,
        "OUTPUT_REDIS_URL": redis_url.replace("/0", "/1"),
        "INPUT_QUEUE": "square-in",
        "OUTPUT_QUEUE": "square-out",
        "GRIDQ_WORKER_POOL": "processes",
        "GRIDQ_WORKER_CONCURRENCY": "8",
        "EXTRA": "1",
    }


def test_output_defaults_to_input(client: TestClient, redis_url: str) -> None:
    r = client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H)
    assert r.json()["output_redis"] == r.json()["input_redis"]


def test_restart_keeps_state(make_client: Callable[..., TestClient], redis_url: str) -> None:
    a = make_client()
    a.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H)
    nid, secret = register(a)
    before = heartbeat(a, nid, secret).json()
    b = make_client()  # a restarted hub, or a second replica
    assert [t["name"] for t in b.get("/api/tasks", headers=ADMIN_H).json()] == ["square"]
    after = heartbeat(b, nid, secret).json()
    assert after["assignments"] == before["assignments"]
    assert [n["node_id"] for n in b.get("/api/nodes", headers=ADMIN_H).json()] == [nid]


def test_list_in_registration_order(client: TestClient, redis_url: str) -> None:
    for n in ("zeta", "alpha", "mid"):
        client.post("/api/tasks", json=task_body(redis_url, name=n), headers=ADMIN_H)
    assert [t["name"] for t in client.get("/api/tasks", headers=ADMIN_H).json()] == [
        "zeta",
        "alpha",
        "mid",
    ]


def test_autoscale_from_depth(client: TestClient, redis_url: str) -> None:
    body = task_body(redis_url, autoscale={"min": 1, "max": 6, "target_depth_per_worker": 10})
    client.post("/api/tasks", json=body, headers=ADMIN_H)
    nid, secret = register(client, parallelism=8)
    assert heartbeat(client, nid, secret).json()["assignments"][0]["replicas"] == 1
    Queue.from_url(redis_url, "square-in").push_raw(*[str(i) for i in range(35)])
    periodic_pass(client)
    assert heartbeat(client, nid, secret).json()["assignments"][0]["replicas"] == 4


def test_celery_kind_reserved(client: TestClient, redis_url: str) -> None:
    body = task_body(redis_url, kind="celery", app="proj.celery:app", queues=["default"])
    r = client.post("/api/tasks", json=body, headers=ADMIN_H)
    assert r.status_code == 201, r.text
    r = client.post("/api/tasks", json=task_body(redis_url, name="x", app="a:b"), headers=ADMIN_H)
    assert r.status_code == 422


def test_json_is_json(client: TestClient) -> None:
    r = client.post(
        "/api/tasks", content=b"{not json", headers={**ADMIN_H, "Content-Type": "application/json"}
    )
    assert r.status_code == 422
    # A malformed body gets a JSON answer that says so, like every other 422.
    assert r.headers["content-type"].startswith("application/json")
    detail = r.json()["detail"]
    assert detail and "json" in json.dumps(detail).lower(), detail
