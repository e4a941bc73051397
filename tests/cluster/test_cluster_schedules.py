"""Schedules on a Redis Cluster: the leader's lease, the tick claim (hub slot) and the
idempotent push (the queue's slot) each run as one script in one slot."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from gridq import keys, protocol
from gridq.hub.main import create_app
from gridq.hub.schedule_ticker import Ticker
from gridq.redisurl import key_slot
from tests.cluster.conftest import Cluster
from tests.hub.hub_helpers import ADMIN_H, settings_for, task_body


def test_schedule_ticks_on_a_cluster(redis_cluster: Cluster) -> None:
    url = redis_cluster.url
    rc = redis_cluster.client()
    app: Any = create_app(settings_for(redis_url=url), background=False)
    with TestClient(app) as client:
        r = client.post("/api/tasks", json=task_body(url, name="ctick"), headers=ADMIN_H)
        assert r.status_code == 201, r.text
        body = {
            "name": "cl",
            "task": "ctick",
            "every": 1,
            "misfire": "all",
            "payload": {"job": {"task": "beat"}},
        }
        assert client.post("/api/schedules", json=body, headers=ADMIN_H).status_code == 201
        rc.hset(keys.hub_schedule_state("cl"), "last_tick", time.time() - 2.5)
        portal = client.portal
        assert portal is not None
        leader, store = app.state.leader, app.state.store
        assert portal.call(leader.step) is True
        portal.call(Ticker(store.schedules, leader).pass_once, leader.token)
        run = client.post("/api/schedules/cl/run", headers=ADMIN_H)
        assert run.status_code == 200, run.text
    items = rc.lrange("ctick-in", 0, -1)
    ids = [protocol.decode(i).id for i in items]
    assert len(ids) >= 3 and run.json()["job_id"] in ids
    q = keys.QueueKeys("ctick-in")
    assert all(rc.exists(q.scheduled(i)) for i in ids)
    assert key_slot(q.scheduled(ids[0])) == key_slot("ctick-in")
