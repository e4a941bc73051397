"""Nodes as read back from Redis: the last heartbeat, registration record, assignments and
the status derived from them (online, offline, draining, stopping, left).

The read half of ``store.nodes`` (nodes.py adds the lifecycle)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from gridq import keys
from gridq.nodeproto import InstanceStatus, NodeInfo

from ..config import HubSettings
from ..gridcore import GRIDNODE_OFFLINE_AFTER


def counts(status: str) -> bool:
    """Whether a node's running instances count (it is neither offline nor gone)."""
    return status not in ("offline", "left")


@dataclass
class NodeView:
    """A node as read back from Redis, with its derived status."""

    node_id: str
    record: dict[str, Any]  # the last heartbeat (or the registration info)
    meta: dict[str, Any]
    last_seen: float | None
    status: str
    assigned: dict[str, int]

    @property
    def info(self) -> NodeInfo:
        return NodeInfo.model_validate(self.record["info"])

    @property
    def instances(self) -> list[InstanceStatus]:
        out = []
        for raw in self.record.get("instances", []):
            try:
                out.append(InstanceStatus.model_validate(raw))
            except ValueError:  # pragma: no cover - records are validated on write
                continue
        return out


class NodeViews:
    def __init__(self, r: aioredis.Redis, settings: HubSettings) -> None:
        self.r = r
        self.settings = settings
        # The last time this hub could not reach its Redis (hub/outage.py sets it): a node
        # is offline after offline_after s of silence the hub could have heard, not of its own.
        self.listening_since = 0.0

    def status(
        self, meta: dict[str, Any], record: dict[str, Any], last_seen: float | None, now: float
    ) -> str:
        if meta.get("left"):
            return "left"
        limit = self.settings.offline_after
        if "gridcore" in record:  # a GridNode heartbeats every 30 s by default
            limit = max(limit, GRIDNODE_OFFLINE_AFTER)
        if last_seen is None or now - max(last_seen, self.listening_since) > limit:
            return "offline"
        if meta.get("stop"):
            return "stopping"
        if record.get("draining"):
            return "draining"
        return "online"

    async def all(self, only: str | None = None) -> list[NodeView]:
        pipe = self.r.pipeline(transaction=False)
        if only is None:
            pipe.hgetall(keys.HUB_NODE_META)
            pipe.hgetall(keys.HUB_NODES)
            pipe.zrange(keys.HUB_NODE_SEEN, 0, -1, withscores=True)
            pipe.hgetall(keys.HUB_ASSIGNMENTS)
            metas, records, seen_list, assigns = await pipe.execute()
            seen = dict(seen_list)
        else:
            pipe.hget(keys.HUB_NODE_META, only)
            pipe.hget(keys.HUB_NODES, only)
            pipe.zscore(keys.HUB_NODE_SEEN, only)
            pipe.hget(keys.HUB_ASSIGNMENTS, only)
            m, rec, score, a = await pipe.execute()
            metas = {only: m} if m else {}
            records = {only: rec} if rec else {}
            seen = {only: score} if score is not None else {}
            assigns = {only: a} if a else {}
        now = time.time()
        out = []
        for nid in sorted(metas):
            record = json.loads(records[nid]) if nid in records else {}
            if "info" not in record:
                continue
            meta = json.loads(metas[nid])
            last = seen.get(nid)
            assigned = {a["task"]: a["replicas"] for a in json.loads(assigns.get(nid, "[]"))}
            out.append(
                NodeView(
                    node_id=nid,
                    record=record,
                    meta=meta,
                    last_seen=float(last) if last is not None else None,
                    status=self.status(meta, record, last, now),
                    assigned=assigned,
                )
            )
        return out

    async def _with_meta(
        self, records_key: str
    ) -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
        """Every node's meta, its entry in ``records_key`` and its last-seen time, in one
        round trip: what a status needs."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(keys.HUB_NODE_META)
        pipe.hgetall(records_key)
        pipe.zrange(keys.HUB_NODE_SEEN, 0, -1, withscores=True)
        metas, records, seen_list = await pipe.execute()
        return metas, records, dict(seen_list)

    async def live_records(self) -> dict[str, dict[str, Any]]:
        """The last heartbeat of each node whose instances count (see counts()). GET
        /api/tasks needs only this: no assignments, no pydantic models, so a read stays
        cheap with hundreds of nodes heartbeating."""
        metas, records, seen = await self._with_meta(keys.HUB_NODES)
        now = time.time()
        out: dict[str, dict[str, Any]] = {}
        for nid, raw in records.items():
            if nid not in metas:
                continue
            record = json.loads(raw)
            if counts(self.status(json.loads(metas[nid]), record, seen.get(nid), now)):
                out[nid] = record
        return out

    async def online(self) -> list[tuple[str, str]]:
        """(node id, capabilities JSON) of every online node, by id: only what placement
        needs, small records rather than the full heartbeats."""
        metas, caps, seen = await self._with_meta(keys.HUB_NODE_CAPS)
        now = time.time()
        out: list[tuple[str, str]] = []
        for nid in sorted(caps):
            if nid not in metas:
                continue
            cap = caps[nid]
            # Cheap pre-check on the raw string; parsed only by placement, if needed.
            draining = '"draining":true' in cap
            status = self.status(json.loads(metas[nid]), {"draining": draining}, seen.get(nid), now)
            if status == "online":
                out.append((nid, cap))
        return out

    async def get(self, node_id: str) -> NodeView | None:
        views = await self.all(only=node_id)
        return views[0] if views else None
