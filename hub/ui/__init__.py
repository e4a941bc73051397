"""The web dashboard (issue #16): server-rendered pages under /ui/, a small script that
refreshes them every 2 s while the tab is visible, uPlot charts (vendored, MIT) fed by
a chart history the hub samples into Redis.

- data.py: every call into the hub's store and REST handlers (one adapter to re-point)
- session.py: logins and CSRF; pages.py: the pages; actions.py: the changes
- history.py: the sampler and chart series; deadletters.py: the dead-letter browser,
  dead_letters_api.py: its REST (/api/tasks/{name}/dead-letters), which actions call
- render.py: templates and shared responses; templates/, static/: shipped in the wheel
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from . import actions, dead_letters_api, history, pages, render


def install(app: FastAPI, *, background: bool = True) -> None:
    """Mount the dashboard on the hub and, with ``background``, run the sampler for as
    long as the app's own lifespan."""
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.include_router(dead_letters_api.router)
    app.mount("/ui/static", StaticFiles(directory=render.HERE / "static"), name="ui-static")

    @app.get("/", include_in_schema=False)
    async def _root() -> RedirectResponse:
        return RedirectResponse("/ui/", 307)

    if not background:
        return
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            task = asyncio.create_task(history.run(a.state.store))
            try:
                yield state
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.router.lifespan_context = lifespan
