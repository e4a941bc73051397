"""Dashboard fixtures: hub apps on the session's real redis-server, flushed per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from gridq.hub.main import create_app
from ui_helpers import settings_for


@pytest.fixture
def make_client(redis_conn: redis.Redis, redis_url: str) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def factory(**kw: Any) -> TestClient:
        kw.setdefault("redis_url", redis_url)
        c = TestClient(create_app(settings_for(**kw), background=False))
        c.__enter__()
        clients.append(c)
        return c

    yield factory
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
