"""Every call the GridCore compatibility layer makes into the hub's store, in one place.

GridNode agents are kept in the same records as gridq nodes (registration record,
last heartbeat, last-seen time), with runtime ``gridnode``, so /api/nodes, `gridq status`
and the running counts of /api/tasks show them with no special case. They get no
scheduling capacity record: the scheduler never places replicas on them, because their
protocol cannot carry a replica count (a GridNode runs the one current task with as
many containers as it decides). Their running containers count in the task's
``instances.running`` through the instances written here.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from gridq import keys
from gridq.nodeproto import NodeInfo

from .gridcore import RUNTIME, HeartbeatRequest, RegisterRequest, TaskConfig, task_config
from .models import TaskRecord
from .store import NODE_ID_RE, Store

_ERROR = "the GridNode reports Error: a container failed to start or exited non-zero (see its log)"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _cursor(tasks: list[TaskRecord], state: dict[str, str]) -> TaskRecord | None:
    """Sequential mode's current task, as the scheduler reads the cursor: the cursor if
    unfinished, else the first unfinished task."""
    cursor = state.get("seq_current") or None
    live = [t for t in tasks if not t.finished]
    return next((t for t in live if t.spec.name == cursor), live[0] if live else None)


def _current(tasks: list[TaskRecord], state: dict[str, str], sequential: bool) -> list[TaskRecord]:
    """Tasks a GridNode may run now, best first."""
    if sequential:
        cur = _cursor(tasks, state)
        return [cur] if cur is not None and not cur.paused else []
    summary = json.loads(state.get("summary") or "{}")
    # Parallel mode: the earliest registered task that wants workers now.
    return [
        t
        for t in tasks
        if not (t.paused or t.finished)
        and int(summary.get(t.spec.name, {}).get("desired", t.spec.replicas)) > 0
    ]


class GridNodeStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.r = store.r

    async def current_task(self, platform: str) -> TaskConfig | None:
        tasks = await self.store.tasks.all()
        state = await self.store.scheduling.state()
        sequential = self.store.settings.scheduling == "sequential"
        for rec in _current(tasks, state, sequential):
            cfg = task_config(rec, platform)
            if cfg is not None:
                return cfg
            if sequential:
                break
        return None

    async def register(self, req: RegisterRequest, platform: str) -> str:
        """Register, or re-register with the saved id; returns the node id."""
        node_id = req.node_id
        if node_id and (
            not NODE_ID_RE.match(node_id) or await self.r.exists(keys.hub_node_secret(node_id))
        ):
            # Not an id gridq can keep, or a gridq node's: that identity is not a
            # GridNode's to take. A fresh one (GridNode uses the answer's id).
            node_id = None
        node_id = node_id or str(uuid.uuid4())
        now = time.time()
        raw = await self.r.hget(keys.HUB_NODE_META, node_id)
        meta = json.loads(raw) if raw else {"registered_at": now}
        # As ComputeHub: a (re-)registered GridNode is a fresh node, not stopping.
        meta.update(stop=False, left=False, gridnode=True, resumed_at=now if raw else None)
        info = NodeInfo(
            hostname=req.hostname,
            arch=platform,
            cpus=max(1, req.cpu_count),
            memory_mb=0,
            runtime=RUNTIME,
            parallelism=req.cpu_count,
            version=RUNTIME,
        )
        record = {
            "info": info.model_dump(),
            "instances": [],
            "errors": [],
            "draining": False,
            "gridcore": {"architecture": req.architecture, "runtime_status": None},
        }
        pipe = self.r.pipeline(transaction=True)
        pipe.srem(keys.HUB_NODES_DELETED, node_id)
        pipe.hset(keys.HUB_NODE_META, node_id, _dumps(meta))
        pipe.hset(keys.HUB_NODES, node_id, _dumps(record))
        pipe.zadd(keys.HUB_NODE_SEEN, {node_id: now})
        await pipe.execute()
        await self.store.events.add(
            f"GridNode {node_id} ({req.hostname}) {'re-registered' if raw else 'registered'}"
        )
        return node_id

    async def heartbeat(self, hb: HeartbeatRequest) -> bool:
        """Record a heartbeat; returns stop_requested."""
        if await self.r.sismember(keys.HUB_NODES_DELETED, hb.node_id):
            # Deleted by an admin: the only thing GridCore's protocol can tell it is
            # to stop (a restarted GridNode registers again with its saved id).
            return True
        raw = await self.r.hget(keys.HUB_NODE_META, hb.node_id)
        if not raw or not json.loads(raw).get("gridnode"):
            return False  # unknown to this hub: ComputeHub answers the same
        meta = json.loads(raw)
        # The heartbeat does not say what runs, and the task poll does not say who asks:
        # the containers are counted for the task the node is told to run now (a GridNode
        # follows a switch at its next poll, within 10 s).
        rec_raw = await self.r.hget(keys.HUB_NODES, hb.node_id)
        platform = json.loads(rec_raw)["info"]["arch"] if rec_raw else "linux/amd64"
        current = await self.current_task(platform)
        task = current.task_name if current else None

        def apply(rec: dict[str, Any]) -> None:
            gc = rec["gridcore"]
            gc.update(runtime_status=hb.status, active_containers=hb.active_containers)
            rec["instances"] = [
                {
                    "instance_id": f"{hb.node_id}-{i}",
                    "task": task,
                    "index": i,
                    "spec_hash": "",
                    "state": "running",
                }
                for i in range(hb.active_containers if task else 0)
            ]
            rec["errors"] = [_ERROR] if hb.status == "Error" else []

        await self._update(hb.node_id, apply)
        await self.r.zadd(keys.HUB_NODE_SEEN, {hb.node_id: time.time()})
        return bool(meta.get("stop"))

    async def _update(self, node_id: str, change: Any) -> None:
        # Read-modify-write without a lock: one GridNode's heartbeats come one at a time.
        raw = await self.r.hget(keys.HUB_NODES, node_id)
        if not raw:
            return
        rec = json.loads(raw)
        if "gridcore" not in rec:
            return
        change(rec)
        await self.r.hset(keys.HUB_NODES, node_id, _dumps(rec))

    async def current_name(self) -> str | None:
        """Sequential mode: the task that runs now (for ComputeHub's `previous`)."""
        cur = _cursor(await self.store.tasks.all(), await self.store.scheduling.state())
        return cur.spec.name if cur else None
