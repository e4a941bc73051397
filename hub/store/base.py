"""The store's connection to the hub's Redis: pool, registered scripts, lifecycle."""

from __future__ import annotations

import json
from typing import Any

import redis
import redis.asyncio as aioredis

from gridq.redisurl import aio_client

from ..config import HubSettings
from . import scripts


def dumps(obj: Any) -> str:
    # Sorted and compact, so equal content gives equal strings (change detection).
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class StoreBase:
    def __init__(self, settings: HubSettings, conn: aioredis.Redis | None = None) -> None:
        self.settings = settings
        # A blocking pool: when more requests wait on Redis than there are connections
        # (a hub briefly overloaded by heartbeats), they queue for a connection instead
        # of failing with "Too many connections" (503). Redis serves one command at a
        # time anyway; more connections would only add sockets to the event loop.
        self.r: aioredis.Redis = conn or aio_client(
            settings.redis_url,
            decode=True,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            health_check_interval=30,
            max_connections=64,
            wait=10.0,
        )
        self._heartbeat = self.r.register_script(scripts.HEARTBEAT)
        self._auth_read = self.r.register_script(scripts.AUTH_READ)
        self._create_task = self.r.register_script(scripts.CREATE_TASK)
        self._update_task = self.r.register_script(scripts.UPDATE_TASK)
        self._unlock = self.r.register_script(scripts.UNLOCK)
        # Sync clients to the tasks' own Redis servers, for live figures; a cache of
        # connections, not state.
        self._task_clients: dict[str, redis.Redis] = {}

    async def close(self) -> None:
        await self.r.aclose()
        for c in self._task_clients.values():
            c.close()
        self._task_clients.clear()

    async def ping(self) -> None:
        await self.r.ping()
