"""Sequential scheduling: one task at a time on every node; next, finish, auto-advance."""

from __future__ import annotations

from collections.abc import Callable

import redis
from fastapi.testclient import TestClient
from hub_helpers import ADMIN_H, heartbeat, periodic_pass, register, task_body


def _running(client: TestClient, nid: str, secret: str) -> list[str]:
    return [a["task"] for a in heartbeat(client, nid, secret).json()["assignments"]]


def _status(client: TestClient) -> dict[str, str]:
    return {
        t["name"]: t["status"] for t in client.get("/api/tasks?live=false", headers=ADMIN_H).json()
    }


def test_next_finish_and_end(make_client: Callable[..., TestClient], redis_url: str) -> None:
    c = make_client(scheduling="sequential", auto_advance=False)
    for n in ("one", "two", "three"):
        assert (
            c.post(
                "/api/tasks", json=task_body(redis_url, name=n, replicas=8), headers=ADMIN_H
            ).status_code
            == 201
        )
    a, sa = register(c, "a")
    b, sb = register(c, "b")
    periodic_pass(c)  # the scheduling pass that sees both nodes
    # Every node works on the same, first task (8 replicas: more than one node holds).
    assert (_running(c, a, sa), _running(c, b, sb)) == (["one"], ["one"])
    assert _status(c) == {"one": "active", "two": "waiting", "three": "waiting"}

    r = c.post("/api/tasks/next", headers=ADMIN_H).json()
    assert r["changed"] and r["current"] == "two"
    assert set(_running(c, a, sa) + _running(c, b, sb)) == {"two"}

    r = c.post("/api/tasks/finish", headers=ADMIN_H).json()
    assert r["changed"] and r["current"] == "three"

    # next at the end changes nothing, and says so.
    r = c.post("/api/tasks/next", headers=ADMIN_H).json()
    assert r["changed"] is False and r["current"] == "three" and "last task" in r["message"]
    assert set(_running(c, a, sa) + _running(c, b, sb)) == {"three"}

    # finishing the last leaves nothing running.
    r = c.post("/api/tasks/finish", headers=ADMIN_H).json()
    assert r["changed"] and r["current"] is None
    assert _running(c, a, sa) == [] and _running(c, b, sb) == []
    assert _status(c) == {"one": "finished", "two": "finished", "three": "finished"}
    r = c.post("/api/tasks/next", headers=ADMIN_H).json()
    assert r["changed"] is False and "no unfinished task" in r["message"]

    # A task added after the end starts.
    c.post("/api/tasks", json=task_body(redis_url, name="four"), headers=ADMIN_H)
    assert _running(c, a, sa) == ["four"]


def test_auto_advance_when_drained(
    make_client: Callable[..., TestClient], redis_url: str, redis_conn: redis.Redis
) -> None:
    c = make_client(scheduling="sequential")
    c.post("/api/tasks", json=task_body(redis_url, name="one"), headers=ADMIN_H)
    c.post("/api/tasks", json=task_body(redis_url, name="two"), headers=ADMIN_H)
    a, sa = register(c, "a")
    # Empty queue, nothing processed yet: not "drained", the task waits for work.
    periodic_pass(c)
    assert _running(c, a, sa) == ["one"]
    redis_conn.lpush("one-in", "job")
    periodic_pass(c)
    assert _running(c, a, sa) == ["one"]
    # Workers took the job and processed it: drained -> advance.
    redis_conn.delete("one-in")
    redis_conn.hincrby("gridq:q:{one-in}:stats", "processed", 1)
    periodic_pass(c)
    assert _running(c, a, sa) == ["two"]
    assert _status(c) == {"one": "finished", "two": "active"}


def test_next_in_parallel_mode_is_409(client: TestClient) -> None:
    r = client.post("/api/tasks/next", headers=ADMIN_H)
    assert r.status_code == 409 and "sequential" in r.json()["detail"]
