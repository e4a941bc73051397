"""Hub test fixtures: an app on the session's real redis-server, flushed per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from hub_helpers import settings_for

from gridq.hub.main import create_app


@pytest.fixture
def make_client(redis_conn: redis.Redis, redis_url: str) -> Iterator[Callable[..., TestClient]]:
    """Build hub clients on the test Redis (flushed once per test); all closed at teardown."""
    clients: list[TestClient] = []

    def factory(**kw: Any) -> TestClient:
        kw.setdefault("redis_url", redis_url)
        app = create_app(settings_for(**kw), background=False)
        c = TestClient(app)
        c.__enter__()
        clients.append(c)
        return c

    yield factory
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
