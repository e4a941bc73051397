"""Helpers of the doctor tests (a plain module next to them; shared helpers live in
tests/support)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from gridq.ports import free_port

ADMIN = "doc-adm-7f3kQ9xZ2pLm4vB8"
JOIN = "doc-join-Hq82nVx0RtYe5Kc"


class LiveHub:
    def __init__(self, redis_url: str) -> None:
        import uvicorn

        from gridq.hub.config import HubSettings
        from gridq.hub.main import create_app

        settings = HubSettings(redis_url=redis_url, token=ADMIN, node_token=JOIN)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(
            create_app(settings, background=False),
            host="127.0.0.1",
            port=self.port,
            log_level="error",
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("hub did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
        )


def by_name(results: list[Any], name: str) -> Any:
    found = [r for r in results if r.name == name]
    assert found, f"no {name} in {[r.name for r in results]}"
    return found[0]
