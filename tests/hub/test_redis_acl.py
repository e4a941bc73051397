"""Per-task Redis ACL users (issue 20): a real redis-server 7 with a password on its
default user, the hub's task routes, and a real `gridq worker` process run with the
environment the hub hands its node."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from hub_helpers import ADMIN_H, heartbeat, register, task_body

from gridq.queue import Queue
from gridq.redisurl import client
from tests.support import wait_for
from tests.worker.conftest import spawn_worker

__all__ = ["spawn_worker"]  # the fixture: a real `gridq worker` process

ADMIN_PW = "acl-admin-Zq81xW"
USER = "gridq-task-square"


@pytest.fixture
def acl_redis(make_redis: Any) -> Any:
    srv = make_redis(ADMIN_PW)
    version = srv.client().info("server")["redis_version"]
    assert int(version.split(".")[0]) >= 6, f"ACL users need Redis 6+, got {version}"
    return srv


def worker_env(client: TestClient) -> dict[str, str]:
    nid, secret = register(client)
    hb = heartbeat(client, nid, secret).json()
    [a] = hb["assignments"]
    env: dict[str, str] = a["spec"]["env"]
    return env


def as_user(url: str) -> redis.Redis:
    # gridq's own client factory, as the worker connects (no CLIENT SETINFO: see it).
    return client(url, timeout=5)


def refused(fn: Callable[[], Any]) -> str:
    with pytest.raises(redis.exceptions.NoPermissionError) as exc:
        fn()
    return str(exc.value)


APP = """
from gridq.errors import Retry
from gridq.worker import App

app = App()
tries = {}

@app.task(retries=3, backoff=0.05)
def square(x):
    tries[x] = tries.get(x, 0) + 1
    if x == 3 and tries[x] < 2:
        raise Retry("once more", delay=0.05)
    return x * x

@app.task(retries=0)
def boom():
    raise ValueError("always")
"""


def test_task_user_runs_the_worker_and_is_confined(
    client: TestClient, acl_redis: Any, spawn_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = acl_redis.client()
    body = task_body(acl_redis.url, replicas=1, redis_acl=True)
    r = client.post("/api/tasks", json=body, headers=ADMIN_H)
    assert r.status_code == 201, r.text
    assert r.json()["redis_acl"] is True
    other = task_body(acl_redis.url, name="other", replicas=0, redis_acl=True)
    assert client.post("/api/tasks", json=other, headers=ADMIN_H).status_code == 201
    env = worker_env(client)
    url = env["INPUT_REDIS_URL"]
    assert env["OUTPUT_REDIS_URL"] == url
    assert url.startswith(f"redis://{USER}:") and ADMIN_PW not in url
    password = redis.connection.parse_url(url)["password"]
    assert len(password) == 64
    # The secret audit: not in any answer, page, metric or log line.
    texts = [
        client.get("/api/tasks", headers=ADMIN_H).text,
        client.get("/api/tasks/square", headers=ADMIN_H).text,
        client.get("/metrics", headers=ADMIN_H).text,
        client.get("/api/events", headers=ADMIN_H).text,
        caplog.text,
    ]
    assert all(password not in t for t in texts)

    # A real worker with exactly the hub's environment processes jobs, retries and
    # dead letters included (scripts, delayed ZSET, stats, consumers, alive keys).
    p = spawn_worker(APP, env=env)
    q = Queue(admin, "square-in")
    for x in (2, 3, 4):
        q.enqueue("square", x)
    q.enqueue("boom")
    q.enqueue("square", 5, _priority=5)
    q.enqueue("square", 6, _delay=0.2)
    wait_for(lambda: admin.llen("square-out") >= 6 or p.poll() is not None, 30)
    out = [json.loads(x) for x in admin.lrange("square-out", 0, -1)]
    assert sorted(o["result"] for o in out if o["status"] == "ok") == [4, 9, 16, 25, 36], (
        p.poll(),
        out,
    )
    [dead] = q.dead_letters()
    assert "exhausted" in dead["reason"] and dead["error"] == "always"
    stats = q.stats()
    assert stats["processed"] == 5 and stats["consumers"] == 1
    denied = admin.execute_command("ACL", "LOG")
    # ACL LOG entries are dicts of bytes; only this task user's denials count here.
    mine = [e for e in denied if USER.encode() in repr(e).encode()]
    assert not mine, ("the worker needed a command or key its user lacks", mine)
    p.terminate()
    assert p.wait(20) == 0

    # Its own keys work; another task's keys, CONFIG and KEYS are refused.
    mine = as_user(url)
    assert mine.lpush("square-in", "x") and mine.rpop("square-in") == b"x"
    assert mine.hgetall("gridq:q:{square-in}:stats")
    refused(lambda: mine.lpush("other-in", "x"))
    refused(lambda: mine.hincrby("gridq:q:{other-in}:stats", "processed", 1))
    refused(lambda: mine.config_get("maxmemory"))
    refused(lambda: mine.keys("*"))
    refused(lambda: mine.execute_command("ACL", "LIST"))
    refused(lambda: mine.flushall())
    # Nor can it reach another task's keys from inside a script.
    with pytest.raises(redis.exceptions.ResponseError, match="(?i)no permissions"):
        mine.eval("return redis.call('LPUSH', KEYS[1], 'x')", 1, "other-in")


def test_patch_rotates_delete_removes(client: TestClient, acl_redis: Any) -> None:
    admin = acl_redis.client()
    body = task_body(acl_redis.url, replicas=1, redis_acl=True)
    assert client.post("/api/tasks", json=body, headers=ADMIN_H).status_code == 201
    nid, secret = register(client)

    def url_now() -> str:
        hb = heartbeat(client, nid, secret).json()
        return str(hb["assignments"][0]["spec"]["env"]["INPUT_REDIS_URL"])

    old = url_now()
    assert as_user(old).ping()
    r = client.patch("/api/tasks/square", json={"replicas": 2}, headers=ADMIN_H)
    assert r.status_code == 200, r.text
    new = url_now()
    assert new != old and new.startswith(f"redis://{USER}:")
    assert as_user(new).ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        as_user(old).ping()
    # Turning it off deletes the user; the workers get the registration's URL again.
    r = client.patch("/api/tasks/square", json={"redis_acl": False}, headers=ADMIN_H)
    assert r.status_code == 200 and r.json()["redis_acl"] is False
    assert admin.execute_command("ACL", "GETUSER", USER) is None
    r = client.patch("/api/tasks/square", json={"redis_acl": True}, headers=ADMIN_H)
    assert admin.execute_command("ACL", "GETUSER", USER) is not None
    assert client.delete("/api/tasks/square", headers=ADMIN_H).status_code == 204
    assert admin.execute_command("ACL", "GETUSER", USER) is None
    with pytest.raises(redis.exceptions.AuthenticationError):
        as_user(new).ping()


def test_credentials_without_acl_permission_are_a_422(client: TestClient, acl_redis: Any) -> None:
    admin = acl_redis.client()
    admin.execute_command(
        "ACL", "SETUSER", "app", "on", ">app-pw-Kx72", "~*", "&*", "+@all", "-@admin"
    )
    url = f"redis://app:app-pw-Kx72@127.0.0.1:{acl_redis.port}/0"
    r = client.post("/api/tasks", json=task_body(url, replicas=1, redis_acl=True), headers=ADMIN_H)
    assert r.status_code == 422, r.text
    [d] = r.json()["detail"]
    assert d["field"] == "input_redis" and "may not run ACL commands" in d["msg"]
    assert "app-pw-Kx72" not in r.text
    assert client.get("/api/tasks/square", headers=ADMIN_H).status_code == 404
    # Without redis_acl the same credentials register fine.
    r = client.post("/api/tasks", json=task_body(url, replicas=1), headers=ADMIN_H)
    assert r.status_code == 201 and r.json()["redis_acl"] is False


def test_hub_default_and_separate_output_redis(
    make_client: Callable[..., TestClient], acl_redis: Any, make_redis: Any
) -> None:
    client = make_client(redis_acl=True)
    out_srv = make_redis("out-admin-Pw93")
    body = task_body(acl_redis.url, replicas=1, output_redis=out_srv.url)
    r = client.post("/api/tasks", json=body, headers=ADMIN_H)
    assert r.status_code == 201 and r.json()["redis_acl"] is True
    env = worker_env(client)
    in_url, out_url = env["INPUT_REDIS_URL"], env["OUTPUT_REDIS_URL"]
    assert in_url != out_url and "out-admin-Pw93" not in out_url and ADMIN_PW not in in_url
    out = as_user(out_url)
    assert out.lpush("square-out", "r") == 1
    refused(lambda: out.lpush("square-in", "x"))  # the input queue is not on this user's list
    refused(lambda: as_user(in_url).lpush("gridq:q:{square-out}:stats", "x"))
    # Celery tasks use kombu's keys: refused with a clear reason rather than half-done.
    r = client.post(
        "/api/tasks",
        json={"name": "cel", "kind": "celery", "app": "m:app", "input_redis": acl_redis.url},
        headers=ADMIN_H,
    )
    assert r.status_code == 422 and 'kind "gridq"' in r.json()["detail"][0]["msg"]


def test_secret_env_values_are_masked(client: TestClient, redis_url: str) -> None:
    """A signing key given to the workers in the task's env is never shown back."""
    key = "sign-key-Vb61nQ0pXs2"
    env = {"GRIDQ_SIGNING_KEY": key, "LOG_LEVEL": "debug", "GRIDQ_SIGNING_KEY_FILE": "/run/k"}
    r = client.post("/api/tasks", json=task_body(redis_url, env=env), headers=ADMIN_H)
    assert r.status_code == 201, r.text
    shown = client.get("/api/tasks/square", headers=ADMIN_H).json()["env"]
    assert shown == {
        "GRIDQ_SIGNING_KEY": "***",
        "LOG_LEVEL": "debug",
        "GRIDQ_SIGNING_KEY_FILE": "/run/k",
    }
    assert key not in r.text
    # The node that runs the task gets the real value.
    assert worker_env(client)["GRIDQ_SIGNING_KEY"] == key


def test_security_doc_lists_the_task_users_commands() -> None:
    """docs/security.md names every command a task user gets, and no other."""
    import re
    from pathlib import Path

    from gridq.hub.redis_acl import WORKER_COMMANDS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    listed = re.search(r"scripts' commands are here\): `([^`]+)`", doc)
    assert listed, "the command list is missing from docs/security.md"
    assert listed.group(1).lower().split() == list(WORKER_COMMANDS)
