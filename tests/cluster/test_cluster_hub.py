"""The hub keeps its state on a Redis Cluster: every script and transaction it runs
stays in the one slot of ``gridq:{hub}:...``."""

from __future__ import annotations

from fastapi.testclient import TestClient

from gridq import keys
from gridq.hub.main import create_app
from gridq.redisurl import key_slot
from tests.cluster.conftest import Cluster
from tests.hub.hub_helpers import (
    ADMIN_H,
    heartbeat,
    periodic_pass,
    register,
    settings_for,
    task_body,
)


def test_hub_state_on_a_cluster(redis_cluster: Cluster) -> None:
    url = redis_cluster.url
    rc = redis_cluster.client()
    app = create_app(settings_for(redis_url=url), background=False)
    with TestClient(app) as client:
        r = client.post("/api/tasks", json=task_body(url, name="csq"), headers=ADMIN_H)
        assert r.status_code == 201, r.text
        node_id, secret = register(client, "cbox")
        assert heartbeat(client, node_id, secret).status_code == 200
        periodic_pass(client)
        r = heartbeat(client, node_id, secret)
        assert r.status_code == 200 and r.json()["assignments"], r.text
        assert client.get("/api/tasks/csq", headers=ADMIN_H).status_code == 200
        assert client.get("/api/nodes", headers=ADMIN_H).json()
        assert client.delete(f"/api/nodes/{node_id}", headers=ADMIN_H).status_code < 300
        assert heartbeat(client, node_id, secret).status_code == 410
    node = rc.get_node_from_key(keys.HUB_TASKS)
    found = [k.decode() for k in rc.scan_iter(match="gridq:{hub}:*", target_nodes=node)]
    assert keys.HUB_TASKS in found and {key_slot(k) for k in found} == {key_slot(keys.HUB)}
