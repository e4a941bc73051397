"""The scheduling service: desired replicas (autoscale, sequential mode) -> per-node
assignments, over the tasks, nodes, figures and events sub-stores.

Passes run when something changes and periodically, never inside a heartbeat; a Redis
lock keeps two hub replicas from writing assignments at the same time, and concurrent
requests in one hub share a pass (Coalescer). The steps themselves are pass_steps.py's.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio.to_thread
import redis.asyncio as aioredis

from gridq import keys

from ..config import HubSettings
from ..models import TaskRecord, TaskSpec
from . import pass_steps as steps
from .base import dumps
from .coalescer import Coalescer
from .events import Events
from .figures import RATE_SAMPLE_EVERY, Figures
from .lock import locked
from .nodes import Nodes
from .tasks import Tasks

log = logging.getLogger("gridq.hub")

Summary = dict[str, dict[str, int]]


class SchedulingService:
    def __init__(
        self,
        r: aioredis.Redis,
        settings: HubSettings,
        *,
        tasks: Tasks,
        nodes: Nodes,
        figures: Figures,
        events: Events,
    ) -> None:
        self.r = r
        self.settings = settings
        self.tasks = tasks
        self.nodes = nodes
        self.figures = figures
        self.events = events
        self._coalesced = Coalescer(self._schedule_locked)

    async def state(self) -> dict[str, str]:
        """The scheduling state: spec_version, summary, the sequential cursor, ..."""
        return dict(await self.r.hgetall(keys.HUB_STATE))

    async def summary(self) -> Summary:
        """Desired, placed and unplaced replicas per task, as of the last pass."""
        raw = await self.r.hget(keys.HUB_STATE, "summary")
        return json.loads(raw) if raw else {}

    async def schedule(self) -> dict[str, Any]:
        """Recompute assignments now (coalesced with concurrent requests)."""
        return dict(await self._coalesced.run())

    async def _schedule_locked(self) -> Summary:
        async with locked(self.r, wait=5.0) as held:
            if not held:
                log.warning("scheduling pass skipped: another hub replica holds the lock")
                return {}
            return await self._pass()

    async def periodic(self) -> None:
        """One tick of the background loop: reschedule, sample rates."""
        async with locked(self.r, wait=0) as held:
            if not held:
                return
            await self._pass()
            tasks = [t.spec for t in await self.tasks.all()]
            last = await self.r.hget(keys.HUB_STATE, "rate_sampled_at")
            if not last or time.time() - float(last) >= RATE_SAMPLE_EVERY:
                await self.figures.sample_rates(await self.figures.stats_many(tasks))

    async def sequence(self, action: str) -> tuple[bool, str, str | None]:
        """Sequential mode: ``next`` or ``finish`` the current task, under the lock."""
        async with locked(self.r, wait=5.0) as held:
            if not held:
                return False, "the hub is busy scheduling; try again", None
            tasks = await self.tasks.all()
            cur = steps.current_task(tasks, (await self.state()).get("seq_current") or None)
            if cur is None:
                return False, "no unfinished task: nothing to advance", None
            after = steps.unfinished_after(tasks, cur)
            if action == "next" and not after:
                return (
                    False,
                    f"{cur} is the last task: nothing changed (POST /api/tasks/finish finishes it)",
                    cur,
                )
            await self._finish(tasks, cur, after[0].spec if after else None)
            new = after[0].spec.name if after else None
        await self.schedule()
        msg = (
            f"{cur} finished; {new} runs now"
            if new
            else f"{cur} finished; no task left, nothing runs"
        )
        return True, msg, new

    async def _finish(self, tasks: list[TaskRecord], cur: str, new: TaskSpec | None) -> None:
        rec = next(t for t in tasks if t.spec.name == cur)
        rec.finished = True
        rec.updated_at = time.time()
        start = await self._processed(new) if new is not None else 0
        # The task and the cursor change together.
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(keys.HUB_TASKS, cur, rec.model_dump_json())
        pipe.hset(
            keys.HUB_STATE,
            mapping={"seq_current": new.name if new else "", "seq_start_processed": start},
        )
        await pipe.execute()
        await self.events.add(
            f"sequential: {cur} finished" + (f", {new.name} starts" if new else ", nothing left")
        )

    async def _processed(self, spec: TaskSpec) -> int:
        return int((await self.figures.stats(spec)).get("processed") or 0)

    async def _pass(self) -> Summary:
        """One pass, under the lock: desired counts, online nodes, fingerprint, write."""
        while True:
            tasks = await self.tasks.all()
            pipe = self.r.pipeline(transaction=False)
            pipe.hgetall(keys.HUB_STATE)
            pipe.hgetall(keys.HUB_ASSIGNMENTS)
            st, old_assign = await pipe.execute()
            desired = await self._desired(tasks, st)
            if desired is not None:
                break  # else the current sequential task finished: read everything again
        online = await self.nodes.online()
        fp = steps.fingerprint(tasks, desired, online, old_assign)
        if fp == st.get("fingerprint") and "summary" in st:
            return dict(json.loads(st["summary"]))
        # Placement is CPU work that grows with the grid: run it off the event loop so
        # heartbeats keep flowing meanwhile.
        new_assign, summary = await anyio.to_thread.run_sync(
            steps.compute, tasks, desired, online, old_assign
        )
        await self._write(old_assign, new_assign, summary, fp)
        return summary

    async def _desired(self, tasks: list[TaskRecord], st: dict[str, str]) -> dict[str, int] | None:
        """Desired replicas per task; None when sequential mode auto-advanced instead."""
        s = self.settings
        sequential = s.scheduling == "sequential"
        stats_needed = {t.spec.name: t.spec for t in tasks if t.spec.autoscale and not t.paused}
        current = await self._sequential_current(tasks, st) if sequential else None
        if current:
            stats_needed[current] = next(t.spec for t in tasks if t.spec.name == current)
        stats = await self.figures.stats_many(stats_needed.values())
        start = int(st.get("seq_start_processed") or 0)
        if current and s.auto_advance and steps.drained(stats.get(current, {}), start):
            after = steps.unfinished_after(tasks, current)
            await self._finish(tasks, current, after[0].spec if after else None)
            log.info("sequential: %s drained, advancing", current)
            return None
        return steps.desired_counts(tasks, stats, sequential, current)

    async def _sequential_current(self, tasks: list[TaskRecord], st: dict[str, str]) -> str | None:
        cursor = st.get("seq_current") or None
        current = steps.current_task(tasks, cursor)
        if current and current != cursor:
            # A task became current without /next (first task, or added after the end):
            # remember where its counter started, for auto-advance.
            spec = next(t.spec for t in tasks if t.spec.name == current)
            start = await self._processed(spec)
            await self.r.hset(
                keys.HUB_STATE, mapping={"seq_current": current, "seq_start_processed": start}
            )
            st["seq_start_processed"] = str(start)
        return current

    async def _write(
        self, old: dict[str, str], new: dict[str, str], summary: Summary, fp: str
    ) -> None:
        """Store the assignments that changed; a changed assignment bumps spec_version."""
        changed = {nid: v for nid, v in new.items() if old.get(nid) != v}
        removed = [nid for nid in old if nid not in new]
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
                "fingerprint": steps.stored_fingerprint(fp, changed, removed),
            },
        )
        await pipe.execute()
        if changed or removed:
            log.info("assignments changed on %d node(s)", len(changed) + len(removed))
