"""Concurrent requests for the same work share one run (scheduling passes)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Coalescer:
    """Runs an async function so that concurrent requests share one run that starts
    after the request was made (so it sees the request's change), instead of each
    request running its own: 100 nodes registering at once cause a few passes, not 100."""

    def __init__(self, fn: Callable[[], Awaitable[T]]) -> None:
        self._fn = fn
        self._lock = asyncio.Lock()
        self._waiting: asyncio.Future[Any] | None = None

    async def run(self) -> Any:
        if self._waiting is not None:
            return await asyncio.shield(self._waiting)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._waiting = fut
        async with self._lock:
            # From here on, new requests need a new run: this one may have read already.
            if self._waiting is fut:
                self._waiting = None
            try:
                result = await self._fn()
            except BaseException as exc:
                fut.set_exception(exc)
                raise
            fut.set_result(result)
            return result
