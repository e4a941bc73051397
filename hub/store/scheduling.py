"""Scheduling passes: desired replicas (autoscale, sequential mode) -> per-node assignments.

Passes run when something changes and periodically, never inside a heartbeat; a Redis
lock keeps two hub replicas from writing assignments at the same time, and concurrent
requests in one hub share a pass (Coalescer).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio.to_thread
import redis.asyncio as aioredis

from gridq import keys

from ..config import HubSettings
from ..models import TaskRecord, TaskSpec
from ..scheduler import NodeCapacity, autoscale_replicas, place
from .base import dumps
from .events import EventStore
from .figures import RATE_SAMPLE_EVERY, FigureStore
from .node_views import NodeViewStore
from .specs import demand_of, worker_spec
from .tasks import TaskStore

log = logging.getLogger("gridq.hub")

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


class Scheduler(EventStore, TaskStore, FigureStore, NodeViewStore):
    def __init__(self, settings: HubSettings, conn: aioredis.Redis | None = None) -> None:
        super().__init__(settings, conn)
        self._pass = Coalescer(self._schedule_locked)

    async def state(self) -> dict[str, str]:
        return dict(await self.r.hgetall(keys.HUB_STATE))

    async def schedule(self) -> dict[str, Any]:
        """Recompute assignments now (coalesced with concurrent requests)."""
        return dict(await self._pass.run())

    async def _lock(self, wait: float) -> str | None:
        token = secrets.token_hex(8)
        deadline = time.monotonic() + wait
        while True:
            if await self.r.set(keys.HUB_SCHEDULE_LOCK, token, nx=True, px=15_000):
                return token
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.02)

    async def _schedule_locked(self, wait: float = 5.0) -> dict[str, Any]:
        token = await self._lock(wait)
        if token is None:
            log.warning("scheduling pass skipped: another hub replica holds the lock")
            return {}
        try:
            return await self._schedule_pass()
        finally:
            await self._unlock(keys=[keys.HUB_SCHEDULE_LOCK], args=[token])

    async def sequence(self, action: str) -> tuple[bool, str, str | None]:
        """Sequential mode: ``next`` or ``finish`` the current task, under the lock."""
        token = await self._lock(5.0)
        if token is None:
            return False, "the hub is busy scheduling; try again", None
        try:
            tasks = await self.list_tasks()
            st = await self.state()
            cur = _current(tasks, st.get("seq_current") or None)
            if cur is None:
                return False, "no unfinished task: nothing to advance", None
            names = [t.spec.name for t in tasks]
            after = [t for t in tasks[names.index(cur) + 1 :] if not t.finished]
            if action == "next" and not after:
                return (
                    False,
                    f"{cur} is the last task: nothing changed (POST /api/tasks/finish finishes it)",
                    cur,
                )
            await self._finish(tasks, cur, after[0].spec if after else None)
            new = after[0].spec.name if after else None
            msg = (
                f"{cur} finished; {new} runs now"
                if new
                else f"{cur} finished; no task left, nothing runs"
            )
        finally:
            await self._unlock(keys=[keys.HUB_SCHEDULE_LOCK], args=[token])
        await self.schedule()
        return True, msg, new

    async def _finish(self, tasks: list[TaskRecord], cur: str, new: TaskSpec | None) -> None:
        rec = next(t for t in tasks if t.spec.name == cur)
        rec.finished = True
        rec.updated_at = time.time()
        start = 0
        if new is not None:
            st = await self.stats(new)
            start = int(st.get("processed") or 0)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(keys.HUB_TASKS, cur, rec.model_dump_json())
        pipe.hset(
            keys.HUB_STATE,
            mapping={"seq_current": new.name if new else "", "seq_start_processed": start},
        )
        await pipe.execute()
        await self.event(
            f"sequential: {cur} finished" + (f", {new.name} starts" if new else ", nothing left")
        )

    async def _schedule_pass(self) -> dict[str, Any]:
        s = self.settings
        tasks = await self.list_tasks()
        # Only what scheduling needs of each node: small records, not the full heartbeats.
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(keys.HUB_NODE_META)
        pipe.hgetall(keys.HUB_NODE_CAPS)
        pipe.zrange(keys.HUB_NODE_SEEN, 0, -1, withscores=True)
        pipe.hgetall(keys.HUB_STATE)
        pipe.hgetall(keys.HUB_ASSIGNMENTS)
        metas, caps, seen_list, st, old_assign = await pipe.execute()
        seen = dict(seen_list)

        desired: dict[str, int] = {}
        stats_needed = [t.spec for t in tasks if t.spec.autoscale and not t.paused]
        current: str | None = None
        if s.scheduling == "sequential":
            current = _current(tasks, st.get("seq_current") or None)
            if current and current != (st.get("seq_current") or None):
                # A task became current without /next (first task, or added after the
                # end): remember where its counter started, for auto-advance.
                spec = next(t.spec for t in tasks if t.spec.name == current)
                start = int((await self.stats(spec)).get("processed") or 0)
                await self.r.hset(
                    keys.HUB_STATE, mapping={"seq_current": current, "seq_start_processed": start}
                )
                st["seq_start_processed"] = str(start)
            if current:
                stats_needed.append(next(t.spec for t in tasks if t.spec.name == current))
        stats = await self.stats_many({sp.name: sp for sp in stats_needed}.values())

        if s.scheduling == "sequential" and current and s.auto_advance:
            cst = stats.get(current, {})
            drained = "error" not in cst and not (
                cst.get("depth") or cst.get("in_flight") or cst.get("delayed")
            )
            if drained and int(cst.get("processed") or 0) > int(st.get("seq_start_processed") or 0):
                names = [t.spec.name for t in tasks]
                after = [t for t in tasks[names.index(current) + 1 :] if not t.finished]
                await self._finish(tasks, current, after[0].spec if after else None)
                log.info("sequential: %s drained, advancing", current)
                return await self._schedule_pass()

        for t in tasks:
            sp = t.spec
            n = sp.replicas
            if sp.autoscale:
                stt = stats.get(sp.name, {})
                if "error" in stt:
                    n = sp.autoscale.min
                else:
                    backlog = int(stt.get("depth") or 0) + int(stt.get("in_flight") or 0)
                    n = autoscale_replicas(
                        backlog,
                        sp.autoscale.min,
                        sp.autoscale.max,
                        sp.autoscale.target_depth_per_worker,
                    )
            if t.paused or t.finished or (s.scheduling == "sequential" and sp.name != current):
                n = 0
            desired[sp.name] = n

        now = time.time()
        online: list[tuple[str, str]] = []
        for nid in sorted(caps):
            if nid not in metas:
                continue
            cap = caps[nid]
            # Cheap pre-check on the raw string; parsed only below, if needed.
            draining = '"draining":true' in cap
            status = self._status(
                json.loads(metas[nid]), {"draining": draining}, seen.get(nid), now
            )
            if status == "online":
                online.append((nid, cap))
        # Nothing that decides placement changed since the last pass (the usual case for
        # the periodic pass): skip the work and the writes.
        fp = hashlib.sha256()
        for t in tasks:
            fp.update(t.model_dump_json(exclude={"updated_at", "created_at"}).encode())
        fp.update(dumps(desired).encode())
        for nid, cap in online:
            fp.update(nid.encode() + b"\0" + cap.encode())
        for nid in sorted(old_assign):
            fp.update(nid.encode() + b"\0" + old_assign[nid].encode())
        fingerprint = fp.hexdigest()
        if fingerprint == st.get("fingerprint") and "summary" in st:
            return dict(json.loads(st["summary"]))

        # Placement is CPU work that grows with the grid: run it off the event loop so
        # heartbeats keep flowing meanwhile.
        new_assign, summary = await anyio.to_thread.run_sync(
            _compute, tasks, desired, online, old_assign
        )
        changed = {nid: v for nid, v in new_assign.items() if old_assign.get(nid) != v}
        removed = [nid for nid in old_assign if nid not in new_assign]
        pipe = self.r.pipeline(transaction=True)
        if changed:
            pipe.hset(keys.HUB_ASSIGNMENTS, mapping=changed)
        if removed:
            pipe.hdel(keys.HUB_ASSIGNMENTS, *removed)
        if changed or removed:
            pipe.hincrby(keys.HUB_STATE, "spec_version", 1)
        pipe.hset(
            keys.HUB_STATE,
            mapping={
                "summary": dumps(summary),
                "fingerprint": _new_fp(fingerprint, changed, removed),
            },
        )
        await pipe.execute()
        if changed or removed:
            log.info("assignments changed on %d node(s)", len(changed) + len(removed))
        return summary

    async def periodic(self) -> None:
        """One tick of the background loop: reschedule, sample rates."""
        token = await self._lock(0)
        if token is None:
            return
        try:
            await self._schedule_pass()
            tasks = [t.spec for t in await self.list_tasks()]
            last = await self.r.hget(keys.HUB_STATE, "rate_sampled_at")
            if not last or time.time() - float(last) >= RATE_SAMPLE_EVERY:
                await self.sample_rates(await self.stats_many(tasks))
        finally:
            await self._unlock(keys=[keys.HUB_SCHEDULE_LOCK], args=[token])

    async def summary(self) -> dict[str, dict[str, int]]:
        raw = await self.r.hget(keys.HUB_STATE, "summary")
        return json.loads(raw) if raw else {}


def _new_fp(fingerprint: str, changed: dict[str, str], removed: list[str]) -> str:
    # The fingerprint covers the assignments read at the start; when this pass rewrote
    # them, the next pass must not skip (it has to confirm the new state is stable).
    return "" if changed or removed else fingerprint


def _compute(
    tasks: list[TaskRecord],
    desired: dict[str, int],
    online: list[tuple[str, str]],
    old_assign: dict[str, str],
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Placement and the per-node assignment JSON (pure; runs in a worker thread)."""
    capacities = []
    for nid, cap in online:
        info = json.loads(cap)["info"]
        capacities.append(
            NodeCapacity(
                node_id=nid,
                arch=info["arch"],
                runtime=info["runtime"],
                slots=int(info["parallelism"]),
                memory_mb=int(info.get("memory_mb") or 0),
                container_memory_mb=int(info.get("container_memory_mb") or 1024),
                labels=info.get("labels") or {},
            )
        )
    previous = {
        nid: {a["task"]: a["replicas"] for a in json.loads(raw)} for nid, raw in old_assign.items()
    }
    result = place([demand_of(t.spec, desired[t.spec.name]) for t in tasks], capacities, previous)
    # Each task's spec serialised once, not once per node.
    spec_json = {t.spec.name: dumps(worker_spec(t.spec).model_dump(mode="json")) for t in tasks}
    new_assign: dict[str, str] = {}
    for nid, per_task in result.placement.items():
        items = ",".join(
            f'{{"replicas":{n},"spec":{spec_json[name]},"task":{json.dumps(name)}}}'
            for name, n in sorted(per_task.items())
        )
        new_assign[nid] = f"[{items}]"
    summary = {
        name: {
            "desired": desired[name],
            "placed": result.placed(name),
            "unplaced": result.unplaced.get(name, 0),
        }
        for name in desired
    }
    return new_assign, summary


def _current(tasks: list[TaskRecord], cursor: str | None) -> str | None:
    """Sequential mode: the task that runs now."""
    by_name = {t.spec.name: t for t in tasks}
    if cursor and cursor in by_name and not by_name[cursor].finished:
        return cursor
    for t in tasks:
        if not t.finished:
            return t.spec.name
    return None
