"""GridCore compatibility fixtures: a hub on the session's real redis-server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from gridcore_helpers import ADMIN, JOIN

from gridq.hub.config import HubSettings
from gridq.hub.main import create_app


@pytest.fixture
def make_hub(redis_conn: redis.Redis, redis_url: str) -> Iterator[Callable[..., TestClient]]:
    """Hub clients on the test Redis (flushed once per test); all closed at teardown."""
    clients: list[TestClient] = []

    def factory(**kw: Any) -> TestClient:
        settings: dict[str, Any] = {
            "redis_url": redis_url,
            "token": ADMIN,
            "node_token": JOIN,
            "heartbeat_interval": 1.0,
        }
        settings.update(kw)
        c = TestClient(create_app(HubSettings(**settings), background=False))
        c.__enter__()
        clients.append(c)
        return c

    yield factory
    for c in clients:
        c.__exit__(None, None, None)
