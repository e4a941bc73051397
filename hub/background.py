"""The hub's background work: the periodic scheduling pass, for the app's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from gridq.redisurl import mask_text

from .outage import RedisOutage
from .store import Store

log = logging.getLogger("gridq.hub")

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


async def periodic(store: Store, interval: float, outage: RedisOutage) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await store.scheduling.periodic()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the loop alive through a Redis outage
            if not outage.failed(exc):
                log.warning("periodic scheduling pass failed: %s", mask_text(str(exc)))
        else:
            outage.ok()


def lifespan(store: Store, interval: float, outage: RedisOutage, background: bool) -> Lifespan:
    """Runs the periodic loop (unless ``background`` is False: tests drive passes) and
    closes the store when the app stops."""

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(periodic(store, interval, outage)) if background else None
        try:
            yield
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await store.close()

    return run
