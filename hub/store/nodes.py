"""Node lifecycle: register (or resume), authenticate, heartbeat, leave, stop, delete.

``store.nodes``: this lifecycle on top of the reads in node_views.py.

A heartbeat is one round trip (scripts.HEARTBEAT): check the node, record the
heartbeat, return the precomputed assignments.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from typing import Any

import redis.asyncio as aioredis

from gridq import keys
from gridq.errors import PermanentError
from gridq.nodeproto import Heartbeat, NodeInfo, RegisterRequest, RegisterResponse

from ..config import HubSettings
from . import scripts
from .base import dumps
from .events import Events
from .node_views import NodeViews

log = logging.getLogger("gridq.hub")

NODE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class NodeAuthError(PermanentError):
    """Unknown node id or wrong secret (401)."""


class NodeGone(PermanentError):
    """The node was deleted (410): it must register again."""


def caps_json(info: NodeInfo, draining: bool) -> str:
    """The part of a heartbeat scheduling depends on. Stored apart from the full record
    (which carries every instance) so a scheduling pass reads little and can tell
    cheaply that nothing changed."""
    # Built from pydantic-core's compact JSON rather than model_dump() + json.dumps: this
    # runs on every heartbeat. Deterministic for a given node (fields in model order,
    # labels as the node sends them); the scheduler's pre-check looks for the literal
    # '"draining":true', so the compact form matters.
    return f'{{"draining":{"true" if draining else "false"},"info":{info.model_dump_json()}}}'


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _slug(hostname: str) -> str:
    s = re.sub(r"[^a-z0-9-]+", "-", hostname.lower()).strip("-")[:40].strip("-")
    return s or "node"


class Nodes(NodeViews):
    def __init__(self, r: aioredis.Redis, settings: HubSettings, events: Events) -> None:
        super().__init__(r, settings)
        self.events = events
        self._heartbeat = r.register_script(scripts.HEARTBEAT)
        self._auth_read = r.register_script(scripts.AUTH_READ)

    async def register(self, req: RegisterRequest) -> tuple[RegisterResponse, bool]:
        """Returns the response and whether an existing identity was resumed."""
        now = time.time()
        record = dumps(
            {"info": req.info.model_dump(), "instances": [], "errors": [], "draining": False}
        )
        if req.node_id and req.secret and NODE_ID_RE.match(req.node_id):
            pipe = self.r.pipeline(transaction=False)
            pipe.get(keys.hub_node_secret(req.node_id))
            pipe.sismember(keys.HUB_NODES_DELETED, req.node_id)
            pipe.hget(keys.HUB_NODE_META, req.node_id)
            stored, deleted, meta_raw = await pipe.execute()
            if (
                stored
                and not deleted
                and meta_raw
                and hmac.compare_digest(stored.encode(), secret_hash(req.secret).encode())
            ):
                meta = json.loads(meta_raw)
                meta.update(stop=False, left=False, resumed_at=now)
                pipe = self.r.pipeline(transaction=True)
                pipe.hset(keys.HUB_NODE_META, req.node_id, dumps(meta))
                pipe.hset(keys.HUB_NODES, req.node_id, record)
                pipe.hset(keys.HUB_NODE_CAPS, req.node_id, caps_json(req.info, False))
                pipe.zadd(keys.HUB_NODE_SEEN, {req.node_id: now})
                await pipe.execute()
                await self.events.add(f"node {req.node_id} ({req.info.hostname}) resumed")
                return (
                    RegisterResponse(
                        node_id=req.node_id,
                        secret=req.secret,
                        heartbeat_interval=self.settings.heartbeat_interval,
                    ),
                    True,
                )
            # A wrong secret never resumes the id: the caller gets a fresh identity.
            log.info(
                "node %s could not resume its id (unknown, deleted or wrong secret)", req.node_id
            )
        secret = secrets.token_urlsafe(32)
        meta = dumps({"registered_at": now, "stop": False, "left": False})
        base = _slug(req.info.hostname)
        while True:
            node_id = f"{base}-{secrets.token_hex(3)}"
            if await self.r.hsetnx(keys.HUB_NODE_META, node_id, meta):
                break
        pipe = self.r.pipeline(transaction=True)
        pipe.set(keys.hub_node_secret(node_id), secret_hash(secret))
        pipe.hset(keys.HUB_NODES, node_id, record)
        pipe.hset(keys.HUB_NODE_CAPS, node_id, caps_json(req.info, False))
        pipe.zadd(keys.HUB_NODE_SEEN, {node_id: now})
        await pipe.execute()
        await self.events.add(f"node {node_id} ({req.info.hostname}) registered")
        return (
            RegisterResponse(
                node_id=node_id, secret=secret, heartbeat_interval=self.settings.heartbeat_interval
            ),
            False,
        )

    async def register_answer(self, resp: RegisterResponse, with_assignments: bool) -> bytes:
        """The RegisterResponse JSON, ready to send. With ``with_assignments`` it carries
        the node's assignments and the spec version as the heartbeat answer does (stored
        JSON, sent as is), so the node can start its workers without waiting for a
        heartbeat; without, it is the answer older agents expect (no extra fields)."""
        body = resp.model_dump_json(exclude={"assignments", "spec_version"})
        if not with_assignments:
            return body.encode()
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(keys.HUB_NODE_META, resp.node_id)
        pipe.hget(keys.HUB_ASSIGNMENTS, resp.node_id)
        pipe.hget(keys.HUB_STATE, "spec_version")
        meta_raw, assignments, version = await pipe.execute()
        # As in a heartbeat: a node asked to stop gets no work.
        if not assignments or not meta_raw or json.loads(meta_raw).get("stop"):
            assignments = "[]"
        return (
            f'{body[:-1]},"assignments":{assignments},"spec_version":{int(version or 0)}}}'
        ).encode()

    async def authenticate(self, node_id: str, secret: str) -> None:
        """Raise NodeGone (410) or NodeAuthError (401); constant-time on the secret."""
        if not NODE_ID_RE.match(node_id):
            raise NodeAuthError("unknown node")
        # One small script rather than a pipeline: same single round trip, a fraction
        # of redis-py's pipeline overhead on the heartbeat path.
        deleted, stored = await self._auth_read(
            keys=[keys.hub_node_secret(node_id), keys.HUB_NODES_DELETED], args=[node_id]
        )
        if int(deleted):
            raise NodeGone("node deleted")
        # Compare even when nothing is stored, so timing does not tell ids apart.
        expected = (stored or "0" * 64).encode()
        if not hmac.compare_digest(expected, secret_hash(secret).encode()) or not stored:
            raise NodeAuthError("unknown node or wrong secret")

    async def heartbeat(self, node_id: str, secret: str, hb: Heartbeat) -> bytes:
        """Authenticate and record the heartbeat in one round trip (see _HEARTBEAT);
        return the HeartbeatResponse JSON, ready to send. Raises NodeGone (410) or
        NodeAuthError (401) like authenticate."""
        if not NODE_ID_RE.match(node_id):
            raise NodeAuthError("unknown node")
        now = time.time()
        res = await self._heartbeat(
            keys=[
                keys.HUB_NODE_META,
                keys.HUB_NODES,
                keys.HUB_NODE_SEEN,
                keys.HUB_ASSIGNMENTS,
                keys.HUB_STATE,
                keys.HUB_NODE_CAPS,
                keys.hub_node_secret(node_id),
                keys.HUB_NODES_DELETED,
            ],
            args=[
                node_id,
                hb.model_dump_json(),
                now,
                caps_json(hb.info, hb.draining),
                secret_hash(secret),
            ],
        )
        code = int(res[0]) if res else 2
        if code == 2:
            raise NodeGone("node deleted")
        if code == 0:
            raise NodeAuthError("unknown node or wrong secret")
        meta = json.loads(res[1])
        stop = bool(meta.get("stop"))
        assignments = "[]" if stop else res[2]
        return (
            f'{{"node_id":{json.dumps(node_id)},"spec_version":{int(res[3])},'
            f'"assignments":{assignments},"stop":{"true" if stop else "false"},'
            f'"heartbeat_interval":{json.dumps(self.settings.heartbeat_interval)},'
            f'"server_time":{json.dumps(now)}}}'
        ).encode()

    async def leave(self, node_id: str) -> None:
        await self._update_meta(node_id, left=True)
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(keys.HUB_ASSIGNMENTS, node_id)
        pipe.hincrby(keys.HUB_STATE, "spec_version", 1)
        await pipe.execute()
        await self.events.add(f"node {node_id} left")

    async def request_stop(self, node_id: str) -> bool:
        ok = await self._update_meta(node_id, stop=True)
        if ok:
            await self.events.add(f"node {node_id}: stop requested")
        return ok

    async def _update_meta(self, node_id: str, **changes: Any) -> bool:
        raw = await self.r.hget(keys.HUB_NODE_META, node_id)
        if not raw:
            return False
        meta = json.loads(raw)
        meta.update(changes)
        await self.r.hset(keys.HUB_NODE_META, node_id, dumps(meta))
        return True

    async def delete(self, node_id: str) -> bool:
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(keys.HUB_NODE_META, node_id)
        pipe.hdel(keys.HUB_NODES, node_id)
        pipe.hdel(keys.HUB_NODE_CAPS, node_id)
        pipe.zrem(keys.HUB_NODE_SEEN, node_id)
        pipe.hdel(keys.HUB_ASSIGNMENTS, node_id)
        pipe.delete(keys.hub_node_secret(node_id))
        pipe.sadd(keys.HUB_NODES_DELETED, node_id)
        pipe.hincrby(keys.HUB_STATE, "spec_version", 1)
        res = await pipe.execute()
        if res[0]:
            await self.events.add(f"node {node_id} deleted")
        return bool(res[0])
