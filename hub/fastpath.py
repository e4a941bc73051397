"""The heartbeat fast path: POST /api/node/{node_id}/heartbeat without FastAPI's machinery.

A heartbeat is the hub's hottest request by far (1,000 nodes at one a second). Through
FastAPI it cost ~1.4 ms of CPU, most of it in the framework: route matching over every
route, dependency solving (sync dependencies hop to a worker thread and back), the
request/response objects. The Redis part is ~0.2 ms. This pure-ASGI layer serves the
*successful* heartbeat directly and hands everything else to the documented FastAPI
route (hub/routes/node_api.py), replaying the body it already read:

- no or malformed ``Authorization: Bearer``, a non-JSON content type, a body that does
  not validate: FastAPI answers (401, 422 with the usual field details);
- unknown node, wrong secret, deleted node, a Redis error, anything unexpected: the
  route runs again and answers 401 / 410 / 503 / 500 exactly as before. A heartbeat
  that is rejected records nothing, and recording one twice is harmless, so running
  the store call a second time on these rare paths changes nothing.

So the security checks are the store's, shared by both paths (Nodes.heartbeat: the
secret's hash compared in constant time, 410 before 401, the node reads only its own
assignments), and the OpenAPI document still describes the route.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gridq.nodeproto import Heartbeat

from .store import NodeAuthError, NodeGone, Nodes

log = logging.getLogger("gridq.hub")

HEARTBEAT_ROUTE = "/api/node/{node_id}/heartbeat"
# Same segment FastAPI's {node_id} path parameter matches (anything but '/').
_PATH = re.compile(r"^/api/node/([^/]+)/heartbeat$")
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The bearer credentials exactly as fastapi.security.HTTPBearer parses them."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, param = value.decode("latin-1").partition(" ")
            param = param.strip()
            if scheme.lower() != "bearer" or not param:
                return None
            return param
    return None


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


class HeartbeatFastPath:
    def __init__(self, app: ASGIApp, nodes: Nodes, route: Any = None) -> None:
        self.app = app
        self.nodes = nodes
        # The APIRoute object, put in the scope like Starlette does on a match, so the
        # latency histogram labels fast-path requests with the route template too.
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        m = (
            _PATH.match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if m is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if await self._serve(m.group(1), scope, body, send):
            return
        await self.app(scope, _replay(body, receive), send)

    async def _serve(self, node_id: str, scope: Scope, body: bytes, send: Send) -> bool:
        """Answer a valid heartbeat; False: let the FastAPI route answer instead."""
        headers = scope["headers"]
        secret = _bearer(headers)
        if secret is None or not _is_json(headers):
            return False
        try:
            hb = Heartbeat.model_validate_json(body)
        except ValidationError:
            return False
        try:
            payload = await self.nodes.heartbeat(node_id, secret, hb)
        except (NodeGone, NodeAuthError):
            return False
        except Exception as exc:
            # Redis down etc.: the route's error handlers give the usual masked answer.
            log.debug("heartbeat fast path fell back: %s", type(exc).__name__)
            return False
        if self.route is not None:
            scope["route"] = self.route
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return True


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A receive that gives the already-read body once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
