"""The hub's background work for the app's lifetime: the leader election, and on the
leader only the periodic scheduling pass and the schedule ticks (hub/leader.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from gridq.redisurl import mask_text

from .leader import Leader
from .outage import RedisOutage
from .schedule_ticker import Ticker
from .store import Store

log = logging.getLogger("gridq.hub")

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


async def periodic(store: Store, interval: float, outage: RedisOutage, leader: Leader) -> None:
    # Passes triggered by changes run on any replica under the scheduling lock; the
    # periodic one (offline nodes, autoscale, auto-advance) only on the leader.
    while True:
        await asyncio.sleep(interval)
        if not leader.leading:
            continue
        try:
            await store.scheduling.periodic()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the loop alive through a Redis outage
            if not outage.failed(exc):
                log.warning("periodic scheduling pass failed: %s", mask_text(str(exc)))
        else:
            outage.ok()


def lifespan(
    store: Store, interval: float, outage: RedisOutage, leader: Leader, background: bool
) -> Lifespan:
    """Runs the election, the periodic loop and the ticker (unless ``background`` is
    False: tests drive passes) and closes the store when the app stops."""

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        tasks = (
            [
                asyncio.create_task(leader.run()),
                asyncio.create_task(periodic(store, interval, outage, leader)),
                asyncio.create_task(Ticker(store.schedules, leader).run()),
            ]
            if background
            else []
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):  # Redis down: the lease expires by itself
                await leader.release()
            await store.close()

    return run
