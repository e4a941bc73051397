"""Failed-login limit: after ``auth_fail_limit`` failed authentications (401s) from one
client address within ``auth_fail_window`` seconds, that address gets 429 with
Retry-After until the window ends; other addresses are unaffected.

Counts live in Redis (``keys.hub_auth_failures``: a counter that expires with its
window), so every hub replica sees the same count. A blocked address is refused before
its token is looked at: a correct guess made while blocked is not confirmed.

Node heartbeats and leaves are authenticated by a 256-bit random secret nobody can
guess, and their 401 is a normal protocol event ("the hub forgot me: register again",
e.g. for every node at once after the hub's state was lost): those 401s do not count,
and those calls get no Redis check of their own (it would double a heartbeat's cost).
An address this replica knows to be blocked is refused there too. The check fails open: with the hub's Redis down, the request goes on and
gets the hub's usual 503.

The middleware also settles the client address (clientaddr.py) once, for the audit.
"""

from __future__ import annotations

import json
import logging
import math
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gridq import keys

from .clientaddr import Network, client_address

log = logging.getLogger("gridq.hub")

PUBLIC = ("/health", "/docs", "/openapi.json")
BLOCKED_KEPT = 10_000  # addresses remembered locally; beyond, expired ones are dropped


def _node_secret_call(path: str) -> bool:
    return path.startswith("/api/node/") and path.endswith(("/heartbeat", "/leave"))


class AuthFailLimit:
    def __init__(
        self,
        app: ASGIApp,
        r: aioredis.Redis,
        limit: int,
        window: float,
        trusted: tuple[Network, ...],
    ) -> None:
        self.app = app
        self.r = r
        self.limit = limit
        self.window = window
        self.trusted = trusted
        # address -> monotonic time its block ends (what this replica has learnt).
        self.blocked: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        addr = client_address(scope, self.trusted)
        scope.setdefault("state", {})["client_addr"] = addr
        path: str = scope["path"]
        if self.limit <= 0 or path.startswith(PUBLIC):
            await self.app(scope, receive, send)
            return
        node_call = _node_secret_call(path)
        wait = self._known_block(addr)
        if wait is None and not node_call:
            wait = await self._redis_block(addr)
        if wait is not None:
            await _too_many(send, addr, wait)
            return
        if node_call:
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                await self._failed(addr)
            await send(message)

        await self.app(scope, receive, counting_send)

    def _known_block(self, addr: str) -> float | None:
        until = self.blocked.get(addr)
        if until is None:
            return None
        left = until - time.monotonic()
        if left > 0:
            return left
        del self.blocked[addr]
        return None

    def _block(self, addr: str, seconds: float) -> None:
        now = time.monotonic()
        if len(self.blocked) >= BLOCKED_KEPT:
            self.blocked = {a: t for a, t in self.blocked.items() if t > now}
        self.blocked[addr] = now + seconds

    async def _redis_block(self, addr: str) -> float | None:
        key = keys.hub_auth_failures(addr)
        try:
            pipe = self.r.pipeline(transaction=False)
            pipe.get(key)
            pipe.pttl(key)
            count, ttl_ms = await pipe.execute()
        except RedisError:
            return None
        if count is None or int(count) < self.limit or ttl_ms <= 0:
            return None
        self._block(addr, ttl_ms / 1000)
        return float(ttl_ms) / 1000

    async def _failed(self, addr: str) -> None:
        key = keys.hub_auth_failures(addr)
        try:
            # The window starts at the first failure (SET NX EX) and is not extended.
            pipe = self.r.pipeline(transaction=True)
            pipe.set(key, 0, nx=True, px=int(self.window * 1000))
            pipe.incr(key)
            pipe.pttl(key)
            _, count, ttl_ms = await pipe.execute()
        except RedisError:
            return
        if count >= self.limit and ttl_ms > 0:
            if count == self.limit:
                log.warning(
                    "%d failed authentications from %s: refused (429) for %.0f s",
                    count,
                    addr,
                    ttl_ms / 1000,
                )
            self._block(addr, ttl_ms / 1000)


async def _too_many(send: Send, addr: str, wait: float) -> None:
    seconds = max(1, math.ceil(wait))
    body = json.dumps(
        {"detail": f"too many failed authentications from {addr}: try again in {seconds} s"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(seconds).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
