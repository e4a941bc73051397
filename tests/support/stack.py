"""Stack helpers: a real `gridq hub` process seen through its REST API (Hub) and
`gridq node` agent processes (AgentProc). The node tests' fixtures start them; the
chaos bench (bench/chaos_grid.py) builds its grid from them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support.polling import wait_for

BIN = Path(sys.executable).parent
GRIDQ = str(BIN / "gridq")


class Hub:
    def __init__(
        self,
        url: str,
        proc: subprocess.Popen[bytes],
        redis_url: str,
        admin_token: str,
        verify: Any = True,
    ) -> None:
        self.url = url
        self.proc = proc
        self.redis_url = redis_url
        self.http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=10,
            verify=verify,
        )

    def create_task(self, **body: Any) -> dict[str, Any]:
        body.setdefault("input_redis", self.redis_url)
        body.setdefault("input_queue", f"q-{body['name']}")
        r = self.http.post("/api/tasks", json=body)
        assert r.status_code in (200, 201), r.text
        return r.json()  # type: ignore[no-any-return]

    def patch_task(self, name: str, **body: Any) -> dict[str, Any]:
        r = self.http.patch(f"/api/tasks/{name}", json=body)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def delete_task(self, name: str) -> None:
        r = self.http.delete(f"/api/tasks/{name}")
        assert r.status_code in (200, 204), r.text

    def nodes(self) -> list[dict[str, Any]]:
        r = self.http.get("/api/nodes")
        assert r.status_code == 200, r.text
        data = r.json()
        return data["nodes"] if isinstance(data, dict) else data  # type: ignore[no-any-return]

    def node(self, node_id: str) -> dict[str, Any] | None:
        for n in self.nodes():
            if n.get("node_id", n.get("id")) == node_id:
                return n
        return None

    def instances(self, node_id: str) -> list[dict[str, Any]]:
        n = self.node(node_id)
        return list((n or {}).get("instances") or [])

    def stop_node(self, node_id: str) -> None:
        r = self.http.post(f"/api/nodes/{node_id}/stop")
        assert r.status_code in (200, 202, 204), r.text


class AgentProc:
    def __init__(self, state_dir: Path, env: dict[str, str], log_path: Path) -> None:
        self.state_dir = state_dir
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProc:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [GRIDQ, "node", "--log-level", "debug"],
            env=self.env,
            stdout=self._log,
            stderr=self._log,
        )
        return self

    @property
    def identity(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "identity.json").read_text())  # type: ignore[no-any-return]

    @property
    def agent_id(self) -> str:
        return str(self.identity["agent_id"])

    def node_id(self, timeout: float = 20) -> str:
        self.ready(timeout)

        def get() -> str | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.log()}")
            try:
                return self.identity.get("node_id")
            except (FileNotFoundError, ValueError):
                return None

        return str(wait_for(get, timeout))

    def ready(self, timeout: float = 30) -> AgentProc:
        """Wait until the agent runs its loop (signal handlers installed, runtime up)."""

        def started() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.log()}")
            return "gridq node " in self.log_path.read_text(errors="replace")

        wait_for(started, timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "_log"):
            self._log.close()
