"""The store's one connection to the hub's Redis, shared by every sub-store."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from gridq.redisurl import aio_client

from ..config import HubSettings


def dumps(obj: Any) -> str:
    # Sorted and compact, so equal content gives equal strings (change detection).
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def connect(settings: HubSettings) -> aioredis.Redis:
    # A blocking pool: when more requests wait on Redis than there are connections
    # (a hub briefly overloaded by heartbeats), they queue for a connection instead
    # of failing with "Too many connections" (503). Redis serves one command at a
    # time anyway; more connections would only add sockets to the event loop.
    # gridq.redisurl.aio_client does that, and takes cluster and sentinel URLs too.
    return aio_client(
        settings.redis_url,
        decode=True,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=30,
        max_connections=64,
        wait=10.0,
    )
