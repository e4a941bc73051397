"""A real Sentinel group for the failover tests: one master, one replica and three
``redis-server --sentinel`` processes (``down-after-milliseconds 1000``,
``failover-timeout 5000``, quorum 2)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from gridq.ports import free_port
from tests.conftest import RedisServer

MASTER = "mym"


class SentinelGroup:
    def __init__(self, server: str, workdir: Path) -> None:
        self.server = server
        self.workdir = workdir
        self.nodes = [RedisServer(server, self._dir("a")), RedisServer(server, self._dir("b"))]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    def _dir(self, name: str) -> Path:
        d = self.workdir / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def start(self) -> None:
        master, replica = self.nodes
        master.start()
        replica.start("--replicaof", "127.0.0.1", str(master.port))
        self.wait_replicas(master.port, 1)
        for port in self.sentinel_ports:
            conf = self.workdir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 5000\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [self.server, str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        # Every sentinel knows the master and has seen the replica and the other two.
        deadline = time.monotonic() + 30
        while True:
            try:
                states = [
                    redis.Redis(port=p, decode_responses=True).sentinel_master(MASTER)
                    for p in self.sentinel_ports
                ]
                if all(
                    int(s["num-slaves"]) >= 1 and int(s["num-other-sentinels"]) >= 2 for s in states
                ):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not discover each other")
            time.sleep(0.1)

    def master_port(self) -> int:
        addr = redis.Redis(port=self.sentinel_ports[0]).sentinel_get_master_addr_by_name(MASTER)
        return int(addr[1])

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    @staticmethod
    def wait_replicas(port: int, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = redis.Redis(port=port).info("replication")
                ups = [
                    v
                    for k, v in info.items()
                    if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
                ]
                if info["role"] == "master" and len(ups) >= n:
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis on {port} has not {n} replica(s) online")
            time.sleep(0.1)

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master; returns it (stopped)."""
        old = self.node(self.master_port())
        assert old.proc is not None
        old.proc.send_signal(signal.SIGKILL)
        old.proc.wait(5)
        return old

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            try:
                port = self.master_port()
                if port != old_port:
                    self.wait_replicas(port, 0, timeout=max(0.1, deadline - time.monotonic()))
                    return port
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("no sentinel promoted the replica")
            time.sleep(0.1)

    def rejoin(self, old: RedisServer, master_port: int) -> None:
        """Bring the killed master back as a replica of the new one (what an operator
        does; the sentinels would reconfigure it too)."""
        old.start("--replicaof", "127.0.0.1", str(master_port))
        self.wait_replicas(master_port, 1)

    def stop(self) -> None:
        for p in self.sentinels:
            if p.poll() is None:
                p.terminate()
        for p in self.sentinels:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for n in self.nodes:
            n.stop()
