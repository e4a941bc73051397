"""A task no online node's runtime can run says so in its status (issue #19): "no free
slot" would send the user after the wrong fix when every slot is free."""

from __future__ import annotations

from fastapi.testclient import TestClient
from hub_helpers import ADMIN_H, heartbeat, periodic_pass, register, task_body


def test_image_task_on_process_nodes_names_the_runtime(client: TestClient, redis_url: str) -> None:
    node_id, secret = register(client, runtime="process")
    heartbeat(client, node_id, secret, runtime="process")
    r = client.post("/api/tasks?validate=false", json=task_body(redis_url), headers=ADMIN_H)
    assert r.status_code == 201, r.text
    periodic_pass(client)
    inst = client.get("/api/tasks/square", headers=ADMIN_H).json()["instances"]
    assert inst["placed"] == 0 and inst["desired"] == 2
    assert "only an image" in inst["unplaced"] and "process runtime" in inst["unplaced"]
    assert "command" in inst["unplaced"]  # the fix

    # With a command the process node runs it: nothing to explain any more.
    fixed = {"command": ["gridq", "worker", "gridq.examples.demo:app"]}
    assert client.patch("/api/tasks/square", json=fixed, headers=ADMIN_H).status_code == 200
    periodic_pass(client)
    inst = client.get("/api/tasks/square", headers=ADMIN_H).json()["instances"]
    assert inst["placed"] == 2 and inst["unplaced"] is None
