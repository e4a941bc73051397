"""Real hub processes (``gridq hub``) on one Redis, for the multi-replica tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from hub_helpers import ADMIN, JOIN

from gridq.ports import free_port
from tests.support import wait_for

GRIDQ = str(Path(sys.executable).parent / "gridq")


__all__ = ["GRIDQ", "HubProc", "wait_for"]


class HubProc:
    """One ``gridq hub`` process; ``start`` again after ``kill`` restarts it (same port)."""

    def __init__(self, redis_url: str, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = dict(os.environ)
        self.env.update(
            GRIDQ_HUB_REDIS_URL=redis_url,
            GRIDQ_HUB_TOKEN=ADMIN,
            GRIDQ_NODE_TOKEN=JOIN,
            GRIDQ_HUB_LOG_LEVEL="info",
            **env,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
        )

    def start(self) -> HubProc:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [GRIDQ, "hub", "--bind", f"127.0.0.1:{self.port}"],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        wait_for(self._up, timeout=30)
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"hub exited: {self.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(self.url + "/health", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    def leading(self) -> bool:
        try:
            text = self.http.get("/metrics").text
        except httpx.HTTPError:
            return False
        return "gridq_hub_leader 1.0" in text

    def kill(self) -> None:
        """SIGKILL: no lease released, nothing flushed."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.http.close()
