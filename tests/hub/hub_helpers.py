"""Helpers shared by the hub tests (imported as a plain module: tests/ has no packages)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from gridq.hub.config import HubSettings

ADMIN = "adm-7f3kQ9xZ2pLm4vB8"
JOIN = "join-Hq82nVx0RtYe5Kc"
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
JOIN_H = {"Authorization": f"Bearer {JOIN}"}


def settings_for(**kw: Any) -> HubSettings:
    base: dict[str, Any] = {
        "token": ADMIN,
        "node_token": JOIN,
        "heartbeat_interval": 1.0,
    }
    base.update(kw)
    return HubSettings(**base)


def node_info(hostname: str = "box1", **kw: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": hostname,
        "arch": "linux/amd64",
        "cpus": 4,
        "memory_mb": 16000,
        "runtime": "docker",
        "parallelism": 4,
        "version": "0.1.0",
    }
    info.update(kw)
    return info


def register(client: TestClient, hostname: str = "box1", **kw: Any) -> tuple[str, str]:
    r = client.post("/api/node/register", json={"info": node_info(hostname, **kw)}, headers=JOIN_H)
    assert r.status_code == 200, r.text
    return r.json()["node_id"], r.json()["secret"]


def heartbeat(
    client: TestClient,
    node_id: str,
    secret: str,
    instances: list[dict[str, Any]] | None = None,
    **info: Any,
) -> Any:
    return client.post(
        f"/api/node/{node_id}/heartbeat",
        json={"info": node_info(**info) if info else node_info(), "instances": instances or []},
        headers={"Authorization": f"Bearer {secret}"},
    )


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


def periodic_pass(client: TestClient) -> None:
    """Run one tick of the hub's background loop (disabled in tests) on its event loop."""
    portal = client.portal
    assert portal is not None
    portal.call(client.app.state.store.scheduling.periodic)  # type: ignore[attr-defined]
