"""The doctor's results for the dashboard, without making pages wait for them.

Running every check against every task's Redis takes a second or more (each queue is
looked at twice, a second apart, and there may be hundreds), so pages show the last
result this hub computed, at most REFRESH_EVERY old, and a refresh starts in the
background when it is stale. Only the very first look (nothing computed yet) and an
explicit "run now" wait for the checks.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI

from . import data

REFRESH_EVERY = 60.0
WINDOW = 1.0  # seconds between the two looks at each queue (GET /api/doctor's default)


class DoctorCache:
    def __init__(self) -> None:
        self.at = 0.0
        self.result: Any = None  # the DoctorOut of GET /api/doctor
        self.running: asyncio.Task[None] | None = None

    async def _refresh(self, app: FastAPI) -> None:
        try:
            self.result = await data.doctor(app.state.store, app.state.settings, WINDOW)
        finally:
            self.at = time.time()
            self.running = None

    def _start(self, app: FastAPI) -> asyncio.Task[None]:
        if self.running is None:
            self.running = asyncio.create_task(self._refresh(app))
        return self.running

    def peek(self, app: FastAPI) -> Any:
        """The last result (None before the first), refreshing in the background if stale."""
        if time.time() - self.at > REFRESH_EVERY:
            self._start(app)
        return self.result

    async def get(self, app: FastAPI, now: bool = False) -> Any:
        """The last result; waits for a run if there is none yet, or if ``now``."""
        if now or self.result is None:
            await asyncio.shield(self._start(app))
        return self.peek(app)

    def age(self) -> float:
        return round(time.time() - self.at, 1)


def cache_of(app: FastAPI) -> DoctorCache:
    cache = getattr(app.state, "ui_doctor", None)
    if cache is None:
        cache = app.state.ui_doctor = DoctorCache()
    return cache
