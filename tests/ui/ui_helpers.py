"""Helpers shared by the dashboard tests (imported as a plain module: tests/ has no packages)."""

from __future__ import annotations

import re

import redis
from fastapi.testclient import TestClient
from hub_helpers import ADMIN, ADMIN_H, JOIN, JOIN_H, task_body

from gridq import protocol
from gridq.keys import QueueKeys

VIEWER = "vwr-K9pT3mXq7Lz2Nc5e"
VIEWER_H = {"Authorization": f"Bearer {VIEWER}"}
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


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


__all__ = [
    "ADMIN",
    "ADMIN_H",
    "JOIN",
    "JOIN_H",
    "VIEWER",
    "VIEWER_H",
    "add_dead",
    "login",
    "task_body",
]
