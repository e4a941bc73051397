"""Notable changes (task registered, node left, ...), masked, for GET /api/events."""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

from gridq import keys
from gridq.redisurl import mask_text

from .base import dumps

EVENTS_KEPT = 500


class Events:
    def __init__(self, r: aioredis.Redis) -> None:
        self.r = r

    async def add(self, text: str) -> None:
        """Record a notable change (masked) for GET /api/events."""
        line = dumps({"time": time.time(), "event": mask_text(text)})
        pipe = self.r.pipeline(transaction=False)
        pipe.lpush(keys.HUB_EVENTS, line)
        pipe.ltrim(keys.HUB_EVENTS, 0, EVENTS_KEPT - 1)
        await pipe.execute()

    async def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        return [json.loads(x) for x in await self.r.lrange(keys.HUB_EVENTS, 0, limit - 1)]
