"""The heartbeat fast path (hub/fastpath.py): successful heartbeats skip FastAPI, every
other answer is the documented route's, byte for byte the same as without it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from hub_helpers import ADMIN_H, heartbeat, node_info, register

from gridq.hub import store as store_mod


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Node ids passed to Nodes.heartbeat: once per request on the fast path."""
    seen: list[str] = []
    real = store_mod.Nodes.heartbeat

    async def spy(self: Any, node_id: str, secret: str, hb: Any) -> bytes:
        seen.append(node_id)
        return await real(self, node_id, secret, hb)

    monkeypatch.setattr(store_mod.Nodes, "heartbeat", spy)
    return seen


def test_valid_heartbeat_is_served_once(client: TestClient, calls: list[str]) -> None:
    nid, secret = register(client)
    r = heartbeat(client, nid, secret)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["node_id"] == nid and body["stop"] is False and "assignments" in body
    assert calls == [nid]  # not handed on to the route, which would call the store again
    metrics = client.get("/metrics", headers=ADMIN_H).text
    assert 'route="/api/node/{node_id}/heartbeat",status="200"' in metrics


def test_rejections_come_from_the_route(client: TestClient, calls: list[str]) -> None:
    nid, secret = register(client)
    r = heartbeat(client, nid, "x" * 43)
    assert r.status_code == 401 and "register again" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert heartbeat(client, "no-such-node", secret).status_code == 401
    # Missing credentials and invalid bodies never reach the store.
    calls.clear()
    r = client.post(f"/api/node/{nid}/heartbeat", json={"info": node_info()})
    assert r.status_code == 401
    r = client.post(
        f"/api/node/{nid}/heartbeat",
        json={"info": node_info(), "bogus": 1},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["msg"] == "unknown field 'bogus'"
    r = client.post(
        f"/api/node/{nid}/heartbeat",
        content=b"{not json",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert calls == []
    assert client.delete(f"/api/nodes/{nid}", headers=ADMIN_H).status_code == 204
    r = heartbeat(client, nid, secret)
    assert r.status_code == 410 and "register again" in r.json()["detail"]


def test_scheme_is_parsed_like_httpbearer(client: TestClient, calls: list[str]) -> None:
    nid, secret = register(client)
    r = client.post(
        f"/api/node/{nid}/heartbeat",
        json={"info": node_info()},
        headers={"Authorization": f"bearer   {secret}  "},
    )
    assert r.status_code == 200 and calls == [nid]
    calls.clear()
    r = client.post(
        f"/api/node/{nid}/heartbeat",
        json={"info": node_info()},
        headers={"Authorization": f"Basic {secret}"},
    )
    assert r.status_code == 401 and calls == []
