"""A real 6-process Redis Cluster (3 masters, 3 replicas) made with
``redis-cli --cluster create``, for the cluster tests."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from tests.support import need

NODES = 6


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports() -> list[int]:
    """Six ports whose cluster-bus ports (port + 10000) are free too, all below 65535."""
    for _ in range(200):
        base = random.randrange(20000, 55535 - NODES)
        ports = list(range(base, base + NODES))
        if all(_free(p) and _free(p + 10000) for p in ports):
            return ports
    raise RuntimeError("no 6 free ports for a cluster")


class Cluster:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = _ports()
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])

    def start(self, server: str, cli: str) -> None:
        self.server = server
        for port in self.ports:
            self._spawn(port)
        for port in self.ports:
            self._wait_ping(port)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports)]
            + ["--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            infos = [self._node(p).execute_command("CLUSTER", "INFO") for p in self.ports]
            if all(b"cluster_state:ok" in i for i in infos):
                return
            time.sleep(0.2)
        raise RuntimeError("the cluster did not reach state ok")

    def _spawn(self, port: int) -> None:
        self.procs[port] = subprocess.Popen(
            [
                self.server,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "2000",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def kill(self, port: int) -> None:
        """SIGKILL one node (a crash: no goodbye to the cluster)."""
        self.procs[port].kill()
        self.procs[port].wait(5)

    def restart(self, port: int) -> None:
        """Start a killed node again; its nodes.conf makes it rejoin (as a replica of
        whoever took over its slots)."""
        self._spawn(port)
        self._wait_ping(port)

    def _node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_connect_timeout=1)

    def _wait_ping(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self._node(port).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on {port} did not start")

    def client(self) -> RedisCluster:
        return RedisCluster(host="127.0.0.1", port=self.ports[0])

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        need("redis-server and redis-cli (apt-get install redis-server) for a Redis Cluster")
    assert server and cli
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start(server, cli)
        yield c
    finally:
        c.stop()


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of its own, for a test that kills one of its nodes."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        need("redis-server and redis-cli (apt-get install redis-server) for a Redis Cluster")
    assert server and cli
    c = Cluster(tmp_path)
    try:
        c.start(server, cli)
        yield c
    finally:
        c.stop()
