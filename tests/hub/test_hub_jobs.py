"""REST jobs (issue #14): enqueue, read, cancel on the task's own Redis."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient
from hub_helpers import ADMIN_H, task_body

from gridq.queue import Queue
from gridq.worker import App
from gridq.worker.settings import WorkerSettings
from gridq.worker.worker import Worker


def test_post_get_delete_jobs(client: TestClient, redis_url: str, redis_conn) -> None:
    assert (
        client.post("/api/tasks", json=task_body(redis_url, "add"), headers=ADMIN_H).status_code
        == 201
    )
    r = client.post("/api/tasks/add/jobs", json={"args": [2, 3]}, headers=ADMIN_H)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["id"]
    waiting = client.post(
        "/api/tasks/add/jobs",
        json={"task": "add", "args": [1, 1], "eta": "2099-01-01T00:00:00Z", "key": "k1"},
        headers=ADMIN_H,
    ).json()
    assert waiting["status"] == "scheduled"
    again = client.post(
        "/api/tasks/add/jobs", json={"args": [9], "key": "k1"}, headers=ADMIN_H
    ).json()
    assert again["id"] == waiting["id"]  # unique key: the existing job

    app = App(input_url=redis_url, input_queue="add-in")

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    w = Worker(app, WorkerSettings(worker_lease_seconds=2.0), burst=True, install_signals=False)
    t = threading.Thread(target=w.run)
    t.start()
    assert Queue.from_url(redis_url, "add-in").job(job["id"]).get(timeout=20) == 5
    t.join(20)

    info = client.get(f"/api/tasks/add/jobs/{job['id']}", headers=ADMIN_H).json()
    assert info["status"] == "succeeded" and info["result"] == 5 and info["attempts"] == 1
    d = client.delete(f"/api/tasks/add/jobs/{waiting['id']}", headers=ADMIN_H)
    assert d.status_code == 200 and d.json() == {
        "id": waiting["id"],
        "cancelled": True,
        "status": "cancelled",
    }
    assert (
        client.delete(f"/api/tasks/add/jobs/{job['id']}", headers=ADMIN_H).json()["cancelled"]
        is False
    )
    assert client.get("/api/tasks/add/jobs/nope", headers=ADMIN_H).status_code == 404
    assert client.delete("/api/tasks/add/jobs/nope", headers=ADMIN_H).status_code == 404
    assert client.get("/api/tasks/other/jobs/x", headers=ADMIN_H).status_code == 404


def test_bad_bodies_are_422_naming_the_field(client: TestClient, redis_url: str) -> None:
    client.post("/api/tasks", json=task_body(redis_url, "add"), headers=ADMIN_H)
    for body, field in (
        ({"args": "x"}, "args"),
        ({"kwargs": [1]}, "kwargs"),
        ({"priority": 10}, "priority"),
        ({"delay": -1}, "delay"),
        ({"surprise": 1}, "surprise"),
        ({"eta": "2099-01-01T00:00:00"}, "eta"),
        ({"eta": "2099-01-01T00:00:00Z", "delay": 3}, "eta"),
    ):
        r = client.post("/api/tasks/add/jobs", json=body, headers=ADMIN_H)
        assert r.status_code == 422, body
        assert field in r.text, (body, r.text)
    assert client.post("/api/tasks/add/jobs", json={}, headers={}).status_code == 401


def test_viewer_reads_jobs_and_changes_are_audited(make_client, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    viewer = {"Authorization": "Bearer view-Jb71qLx9PwN4sD"}
    client: TestClient = make_client(viewer_token="view-Jb71qLx9PwN4sD")
    client.post("/api/tasks", json=task_body(redis_url, "add"), headers=ADMIN_H)
    job = client.post("/api/tasks/add/jobs", json={"args": [1, 2]}, headers=ADMIN_H).json()
    assert client.get(f"/api/tasks/add/jobs/{job['id']}", headers=viewer).status_code == 200
    assert client.post("/api/tasks/add/jobs", json={"args": [1]}, headers=viewer).status_code == 403
    assert client.delete(f"/api/tasks/add/jobs/{job['id']}", headers=viewer).status_code == 403
    assert client.delete(f"/api/tasks/add/jobs/{job['id']}", headers=ADMIN_H).status_code == 200
    trail = client.get("/api/audit", headers=ADMIN_H).json()
    actions = [(e["action"], e["actor"], e["target"]) for e in trail]
    assert ("job.create", "admin", "add") in actions and ("job.cancel", "admin", "add") in actions
    assert not [a for a in actions if a[0].startswith("job.") and a[1] == "viewer"]
