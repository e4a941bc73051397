"""The chaos bench's grid: a real redis-server, `gridq hub` and `gridq node` processes
running `gridq worker` processes with the chaos handler, and a paced producer.

bench/chaos.py breaks this grid in its scenarios; tests/chaos/ runs them short.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from gridq.ports import free_port
from tests.support import RedisServer, redis_server_binary, wait_for
from tests.support.stack import GRIDQ, AgentProc, Hub

APP_SOURCE = '''
"""The chaos handler: echo the item, count each run in Redis (a side effect)."""
import os
import time

import redis
from gridq.worker import App

app = App()
SLEEP = float(os.environ.get("CHAOS_SLEEP", "0.02"))
_conn = None


def _r():
    global _conn
    if _conn is None:
        _conn = redis.Redis.from_url(os.environ["INPUT_REDIS_URL"])
    return _conn


def _count(item):
    # The side effect must land even across a Redis restart: retry for up to 60 s.
    deadline = time.monotonic() + 60
    while True:
        try:
            _r().hincrby("chaos:runs", item, 1)
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@app.default
def run(item: bytes):
    _count(item)
    time.sleep(SLEEP)
    return item
'''

# Idempotent push: a retried batch (reply lost in a Redis restart) is not pushed twice.
PUSH_LUA = """
if redis.call('SET', KEYS[2], '1', 'NX') then
  return redis.call('LPUSH', KEYS[1], unpack(ARGV))
end
return 0
"""


def marker(prefix: str) -> str:
    """A unique, unguessable value the hub accepts as a token (no placeholder words)."""
    return f"{prefix}{secrets.token_hex(12)}"


@dataclass
class Grid:
    """Redis + one hub + node agents as real processes, each restartable."""

    tmp: Path
    redis_password: str | None = None
    admin_token: str = field(default_factory=lambda: marker("zqA"))
    node_token: str = field(default_factory=lambda: marker("zqN"))
    viewer_token: str = field(default_factory=lambda: marker("zqV"))
    aof: bool = True
    hub_interval: float = 0.5
    node_interval: float = 0.5
    hub_log_level: str = "info"
    # "process" or "docker": with docker, workers run from worker_image (build_image())
    # on the host network, so they reach this grid's Redis on 127.0.0.1.
    runtime: str = "process"
    worker_image: str = ""
    redis: Any = None
    hub: Hub | None = None
    hub_port: int = 0
    agents: list[AgentProc] = field(default_factory=list)
    node_metrics_ports: list[int] = field(default_factory=list)
    _hub_logs: list[Any] = field(default_factory=list)

    # -- Redis ---------------------------------------------------------------------------

    def redis_args(self) -> list[str]:
        if not self.aof:
            return []
        return ["--appendonly", "yes", "--appendfsync", "everysec"]

    def start_redis(self) -> None:
        binary = redis_server_binary()
        if not binary:
            raise RuntimeError("no redis-server binary")
        d = self.tmp / "redis"
        d.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(binary, d, password=self.redis_password)
        self.redis.start(*self.redis_args())

    @property
    def redis_url(self) -> str:
        return str(self.redis.url)

    def conn(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=2)

    def stop_redis(self, kill: bool = False) -> None:
        """Clean SHUTDOWN (SIGTERM: Redis fsyncs the AOF) or SIGKILL."""
        proc = self.redis.proc
        if kill:
            proc.kill()
            proc.wait()
        else:
            self.redis.stop()

    def start_redis_again(self) -> None:
        self.redis.start(*self.redis_args())

    # -- hub -----------------------------------------------------------------------------

    def hub_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
        env.update(
            GRIDQ_HUB_REDIS_URL=self.redis_url,
            GRIDQ_HUB_TOKEN=self.admin_token,
            GRIDQ_NODE_TOKEN=self.node_token,
            GRIDQ_HUB_VIEWER_TOKEN=self.viewer_token,
            GRIDQ_HUB_HEARTBEAT_INTERVAL=str(self.hub_interval),
            GRIDQ_HUB_SCHEDULE_INTERVAL=str(self.hub_interval),
            GRIDQ_HUB_LOG_LEVEL=self.hub_log_level,
        )
        return env

    def start_hub(self) -> Hub:
        self.hub_port = self.hub_port or free_port()
        log = open(self.tmp / "hub.log", "ab")  # noqa: SIM115 (closed in close())
        self._hub_logs.append(log)
        proc = subprocess.Popen(
            [GRIDQ, "hub", "--bind", f"127.0.0.1:{self.hub_port}"],
            env=self.hub_env(),
            stdout=log,
            stderr=log,
        )
        url = f"http://127.0.0.1:{self.hub_port}"

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"hub exited: {self.log('hub.log')}")
            try:
                return httpx.get(url + "/health", timeout=1).status_code < 500
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30)
        if self.hub is not None:
            self.hub.http.close()
        self.hub = Hub(url, proc, self.redis_url, self.admin_token)
        return self.hub

    def kill_hub(self) -> None:
        assert self.hub is not None
        self.hub.proc.kill()
        self.hub.proc.wait()

    # -- node agents ---------------------------------------------------------------------

    def agent_env(self, i: int, parallelism: int) -> dict[str, str]:
        assert self.hub is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
        env.update(
            GRIDQ_HUB_URL=self.hub.url,
            GRIDQ_NODE_TOKEN=self.node_token,
            GRIDQ_NODE_STATE_DIR=str(self.tmp / f"node{i}"),
            GRIDQ_NODE_RUNTIME=self.runtime,
            GRIDQ_NODE_HEARTBEAT_INTERVAL=str(self.node_interval),
            GRIDQ_NODE_STOP_TIMEOUT="5",
            GRIDQ_NODE_RESTART_BACKOFF="0.3",
            GRIDQ_NODE_RESTART_BACKOFF_MAX="1",
            GRIDQ_NODE_METRICS_BIND=f"127.0.0.1:{self.node_metrics_ports[i]}",
            GRIDQ_NODE_PARALLELISM=str(parallelism),
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        )
        if self.runtime == "docker":
            env["GRIDQ_NODE_DOCKER_NETWORK"] = "host"
        return env

    def add_agent(self, parallelism: int = 2) -> AgentProc:
        i = len(self.agents)
        self.node_metrics_ports.append(free_port())
        a = AgentProc(
            self.tmp / f"node{i}", self.agent_env(i, parallelism), self.tmp / f"agent{i}.log"
        )
        a.proc = subprocess.Popen(  # like AgentProc.start(), at info level (what users see)
            [GRIDQ, "node", "--log-level", "info"],
            env=a.env,
            stdout=(log := open(a.log_path, "ab")),  # noqa: SIM115 (closed by AgentProc.stop)
            stderr=log,
        )
        a._log = log
        self.agents.append(a)
        wait_for(lambda: "gridq node " in a.log_path.read_text(errors="replace"), 30)
        return a

    def kill_agent(self, i: int) -> None:
        a = self.agents[i]
        assert a.proc is not None
        a.proc.kill()
        a.proc.wait()

    def restart_agent(self, i: int) -> None:
        a = self.agents[i]
        a.proc = subprocess.Popen(
            [GRIDQ, "node", "--log-level", "info"], env=a.env, stdout=a._log, stderr=a._log
        )

    def worker_records(self) -> list[dict[str, Any]]:
        """Live workers of this grid's nodes: instance_id and host pid (SIGKILL-able)."""
        if self.runtime == "docker":
            return [
                {"instance_id": c["instance_id"], "pid": c["pid"]}
                for c in self._containers()
                if c["running"]
            ]
        out = []
        for a in self.agents:
            for p in (a.state_dir / "processes").glob("*.json"):
                with contextlib.suppress(ValueError, OSError):
                    out.append(json.loads(p.read_text()))
        return [r for r in out if _alive(int(r["pid"]))]

    def worker_logs(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for a in self.agents:
            for p in (a.state_dir / "logs").glob("*.log"):
                out[p.name] = p.read_text(errors="replace")
        return out

    def _node_ids(self) -> set[str]:
        ids = set()
        for a in self.agents:
            # From the identity file: a killed agent's workers still count.
            with contextlib.suppress(OSError, ValueError):
                nid = a.identity.get("node_id")
                if nid:
                    ids.add(str(nid))
        return ids

    def _containers(self) -> list[dict[str, Any]]:
        """This grid's worker containers (by the node's labels), from `docker inspect`."""
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", "label=gridq.node"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        if not ids:
            return []
        r = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True)
        nodes = self._node_ids()
        out = []
        for c in json.loads(r.stdout or "[]"):
            labels = c["Config"]["Labels"] or {}
            if labels.get("gridq.node") in nodes:
                out.append(
                    {
                        "id": c["Id"],
                        "instance_id": labels.get("gridq.instance", ""),
                        "pid": int(c["State"]["Pid"]),
                        "running": bool(c["State"]["Running"]),
                    }
                )
        return out

    def build_image(self) -> None:
        """worker_image: FROM gridq-worker:test (scripts/build-test-images.sh) plus the
        chaos handler. Local only: no registry is involved."""
        d = self.tmp / "image"
        d.mkdir(parents=True, exist_ok=True)
        (d / "chaos_app.py").write_text(APP_SOURCE)
        (d / "Dockerfile").write_text(
            "FROM gridq-worker:test\nCOPY chaos_app.py /app/chaos_app.py\nENV PYTHONPATH=/app\n"
        )
        self.worker_image = "gridq-chaos:test"
        subprocess.run(
            ["docker", "build", "-q", "-t", self.worker_image, str(d)],
            check=True, capture_output=True,
        )  # fmt: skip

    def log(self, name: str) -> str:
        try:
            return (self.tmp / name).read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def close(self) -> None:
        for a in self.agents:
            with contextlib.suppress(Exception):
                a.stop()
        # Whatever survived (workers of a killed agent): kill their process groups.
        if self.runtime == "docker":
            with contextlib.suppress(Exception):
                left = [c["id"] for c in self._containers()]
                if left:
                    subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
        for a in self.agents:
            for rec in (a.state_dir / "processes").glob("*.json"):
                with contextlib.suppress(Exception):
                    os.killpg(json.loads(rec.read_text())["pid"], signal.SIGKILL)
        if self.hub is not None:
            self.hub.http.close()
            if self.hub.proc.poll() is None:
                self.hub.proc.terminate()
                try:
                    self.hub.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.hub.proc.kill()
                    self.hub.proc.wait()
        for f in self._hub_logs:
            f.close()
        if self.redis is not None:
            self.redis.stop()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def write_app(tmp: Path) -> None:
    (tmp / "chaos_app.py").write_text(APP_SOURCE)


def create_worker_task(
    grid: Grid,
    name: str,
    replicas: int,
    *,
    lease: float = 2.0,
    concurrency: int = 4,
    prefetch: int = 4,
    sleep: float = 0.02,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    assert grid.hub is not None
    write_app(grid.tmp)
    args = ["worker", "chaos_app:app", "--concurrency", str(concurrency)]
    args += ["--prefetch", str(prefetch)]
    where: dict[str, Any] = (
        {"image": grid.worker_image, "command": ["gridq", *args]}
        if grid.runtime == "docker"
        else {"command": [GRIDQ, *args]}
    )
    return grid.hub.create_task(
        name=name,
        **where,
        input_queue=f"{name}-in",
        output_queue=f"{name}-out",
        replicas=replicas,
        env={
            # The handler: written to tmp for processes, baked into the image (/app).
            "PYTHONPATH": "/app" if grid.runtime == "docker" else str(grid.tmp),
            "GRIDQ_WORKER_LEASE_SECONDS": str(lease),
            "CHAOS_SLEEP": str(sleep),
            **(extra_env or {}),
        },
    )


# -- the producer ------------------------------------------------------------------------


class Producer(threading.Thread):
    """Pushes job ids at a steady rate; records when Redis CONFIRMED each batch."""

    def __init__(self, grid: Grid, queue: str, jobs: int, rate: float, batch: int = 20) -> None:
        super().__init__(daemon=True)
        self.grid, self.queue, self.jobs, self.rate, self.batch = grid, queue, jobs, rate, batch
        self.confirmed: dict[bytes, float] = {}
        self.retries = 0
        self.done = threading.Event()
        self.stop_flag = threading.Event()

    def run(self) -> None:
        r = self.grid.conn()
        push = r.register_script(PUSH_LUA)
        t0 = time.monotonic()
        n = 0
        b = 0
        while n < self.jobs and not self.stop_flag.is_set():
            ids = [f"job-{i:07d}".encode() for i in range(n, min(self.jobs, n + self.batch))]
            while not self.stop_flag.is_set():
                try:
                    push(keys=[self.queue, f"chaos:batch:{b}"], args=ids)
                    break
                except redis.RedisError:
                    self.retries += 1
                    time.sleep(0.1)
            now = time.time()
            for i in ids:
                self.confirmed[i] = now
            n += len(ids)
            b += 1
            delay = t0 + n / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.done.set()
