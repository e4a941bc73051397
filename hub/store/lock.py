"""The scheduling lock: one hub replica at a time writes assignments."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from gridq import keys

from . import scripts

LOCK_TTL_MS = 15_000  # a replica that dies holding the lock blocks the others this long


@asynccontextmanager
async def locked(r: aioredis.Redis, wait: float) -> AsyncIterator[bool]:
    """Hold the scheduling lock for the block; yields False (and holds nothing) when
    another replica kept it for ``wait`` seconds."""
    token = secrets.token_hex(8)
    deadline = time.monotonic() + wait
    while not await r.set(keys.HUB_SCHEDULE_LOCK, token, nx=True, px=LOCK_TTL_MS):
        if time.monotonic() >= deadline:
            yield False
            return
        await asyncio.sleep(0.02)
    try:
        yield True
    finally:
        # Only our own token: after a TTL expiry the lock may be another replica's.
        await r.register_script(scripts.UNLOCK)(keys=[keys.HUB_SCHEDULE_LOCK], args=[token])
