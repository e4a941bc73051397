"""The hub's own Redis outage: nodes it could not hear meanwhile are not declared offline.

A real redis-server (AOF, so the state survives the restart, as in production) is
stopped under a hub; heartbeats get 503; Redis comes back. Before the fix, the first
scheduling pass then saw every node's last heartbeat as stale, declared the node
offline and took its workers away (tests/chaos/test_partition.py shows the result:
the node stops its workers and starts new ones).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hub_helpers import ADMIN_H, heartbeat, periodic_pass, register, settings_for, task_body

from gridq.hub.main import create_app
from tests.support import RedisServer


@pytest.fixture
def own_redis(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer(redis_binary, tmp_path)
    srv.start("--appendonly", "yes")
    yield srv
    srv.stop()


def _assigned(client: TestClient, nid: str, secret: str) -> int:
    r = heartbeat(client, nid, secret)
    assert r.status_code == 200, r.text
    return sum(a["replicas"] for a in r.json()["assignments"])


def test_silence_during_the_hubs_redis_outage_is_not_offline(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings_for(redis_url=own_redis.url), background=False)
    store = app.state.store
    with TestClient(app) as client:
        client.post("/api/tasks", json=task_body(own_redis.url), headers=ADMIN_H)
        nid, secret = register(client, "a")
        periodic_pass(client)
        assert _assigned(client, nid, secret) == 2

        own_redis.stop()
        caplog.set_level(logging.INFO, logger="gridq.hub")
        for _ in range(3):
            assert heartbeat(client, nid, secret).status_code == 503
        outage_lines = [r for r in caplog.records if "hub Redis unreachable" in r.message]
        assert len(outage_lines) == 1, caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
        own_redis.start("--appendonly", "yes")

        # The outage lasted longer than offline_after (3 s at a 1 s interval): the last
        # heartbeat the hub stored is 10 s old. Simulated, so the test need not wait.
        conn = own_redis.client()
        conn.zadd("gridq:{hub}:node_seen", {nid: time.time() - 10})
        periodic_pass(client)
        node = client.get(f"/api/nodes/{nid}", headers=ADMIN_H).json()
        assert node["status"] == "online", node
        assert node["assigned"] == {"square": 2}, node
        assert _assigned(client, nid, secret) == 2
        app.state.redis_outage.ok()
        assert "hub Redis reachable again" in caplog.text

        # A node that stays silent while the hub can hear it is still declared offline.
        conn.zadd("gridq:{hub}:node_seen", {nid: time.time() - 10})
        store.nodes.listening_since = time.time() - 3.5
        periodic_pass(client)
        node = client.get(f"/api/nodes/{nid}", headers=ADMIN_H).json()
        assert node["status"] == "offline" and node["assigned"] == {}, node
        conn.close()
