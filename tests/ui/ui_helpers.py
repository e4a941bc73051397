"""Helpers shared by the dashboard tests (imported as a plain module: tests/ has no packages)."""

from __future__ import annotations

import re
from typing import Any

import redis
from fastapi.testclient import TestClient
from gridq.hub.config import HubSettings

from gridq import protocol
from gridq.keys import QueueKeys

ADMIN = "adm-R4nd0mQ8zLx2Vb7w"
VIEWER = "vwr-K9pT3mXq7Lz2Nc5e"
JOIN = "join-Hq82nVx0RtYe5Kc"
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
VIEWER_H = {"Authorization": f"Bearer {VIEWER}"}
JOIN_H = {"Authorization": f"Bearer {JOIN}"}
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def settings_for(**kw: Any) -> HubSettings:
    base: dict[str, Any] = {
        "token": ADMIN,
        "node_token": JOIN,
        "viewer_token": VIEWER,
        "heartbeat_interval": 1.0,
    }
    base.update(kw)
    return HubSettings(**base)


def login(client: TestClient, token: str = ADMIN) -> str:
    """Log in through the form; returns the session's CSRF token (read from a page)."""
    r = client.post("/ui/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get("/ui/tasks")
    assert page.status_code == 200
    m = CSRF_RE.search(page.text)
    assert m, "no CSRF field on the page"
    return m.group(1)


def add_dead(conn: redis.Redis, queue: str, n: int, error_type: str, start: int = 0) -> None:
    """``n`` dead letters as a worker writes them (gridq.protocol.dead_record)."""
    recs = [
        protocol.dead_record(
            str(start + i).encode(),
            job_id=f"job-{error_type}-{start + i}",
            task="square",
            reason="failed",
            error_type=error_type,
            message=f"bad input {start + i}",
            traceback=f'Traceback (most recent call last):\n  File "w.py"\n{error_type}: bad',
            attempts=3,
        )
        for i in range(n)
    ]
    conn.lpush(QueueKeys(queue).dead, *recs)


def task_body(redis_url: str, name: str = "square", **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "image": "example/square:1",
        "input_redis": redis_url,
        "input_queue": f"{name}-in",
        "output_queue": f"{name}-out",
        "replicas": 2,
    }
    body.update(kw)
    return body
