"""The doctor's one-line summary for the overview, without making a page wait for it.

Running every check against every task's Redis takes seconds with hundreds of tasks, so
the overview never waits: it gets the last summary this hub computed (at most
REFRESH_EVERY old) and a refresh starts in the background when that one is stale. The
doctor page itself runs the checks in full, on request.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI

from . import data

REFRESH_EVERY = 60.0


class DoctorCache:
    def __init__(self) -> None:
        self.at = 0.0
        self.body: dict[str, Any] | None = None
        self.running: asyncio.Task[None] | None = None

    async def _refresh(self, app: FastAPI) -> None:
        try:
            # window 0: the quick checks only (the doctor page looks twice, 1 s apart).
            result = await data.doctor(app.state.store, app.state.settings, 0.0)
            self.body = {"ok": result.ok, "summary": result.summary}
        except Exception as exc:  # a Redis outage: say so instead of the summary
            self.body = {"ok": False, "summary": f"the doctor could not run: {type(exc).__name__}"}
        finally:
            self.at = time.time()
            self.running = None

    def get(self, app: FastAPI) -> dict[str, Any]:
        if self.running is None and time.time() - self.at > REFRESH_EVERY:
            self.running = asyncio.create_task(self._refresh(app))
        if self.body is None:
            return {"ok": None, "summary": "the doctor is running its checks…", "pending": True}
        return {**self.body, "age": round(time.time() - self.at, 1)}


def cache_of(app: FastAPI) -> DoctorCache:
    cache = getattr(app.state, "ui_doctor", None)
    if cache is None:
        cache = app.state.ui_doctor = DoctorCache()
    return cache
