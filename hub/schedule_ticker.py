"""The schedule tick loop: runs on every replica, acts only on the leader's.

Each pass: replay the jobs a previous leader claimed but may not have pushed, then for
every schedule that is not paused claim its due ticks (hub/store/schedules.py, fenced
by the leader's token) and push their jobs (idempotent by job id). The loop then
sleeps until the next tick is due, at most MAX_SLEEP: a tick is pushed within about
MAX_SLEEP of its time (plus its jitter), on a leader that is not overloaded.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis

from gridq.errors import PermanentError
from gridq.outage import OutageLog
from gridq.redisurl import mask_text

from .leader import Leader
from .models import TaskSpec
from .models_schedules import Payload, ScheduleSpec
from .schedule_times import jitter_of, job_id, next_tick, parse_job_id, plan
from .store.schedules import Schedules

log = logging.getLogger("gridq.hub")

MAX_SLEEP = 0.5  # seconds: the loop wakes at least this often (a new schedule, a handover)


class LostLeadership(PermanentError):
    """A claim was refused: another replica holds the lease now."""


class Ticker:
    def __init__(self, schedules: Schedules, leader: Leader) -> None:
        self.schedules = schedules
        self.leader = leader
        self._outage = OutageLog(log, up_message="schedule ticks: working again after %.1f s")
        self._no_task: set[str] = set()  # schedules whose task is missing (logged once)
        self._unreachable: set[str] = set()  # schedules whose task's Redis failed (logged once)

    async def run(self) -> None:
        while True:
            wait = MAX_SLEEP
            token = self.leader.token if self.leader.leading else None
            if token is not None:
                try:
                    wait = await self.pass_once(token)
                except asyncio.CancelledError:
                    raise
                except LostLeadership:
                    log.warning("schedule tick refused: this replica no longer leads")
                except Exception as exc:  # Redis outages: retried on the next pass
                    self._outage.down(f"schedule ticks failed: {exc}")
                else:
                    self._outage.up()
            await asyncio.sleep(min(max(wait, 0.01), MAX_SLEEP))

    async def pass_once(self, token: str) -> float:
        """One pass; returns the seconds until the next tick is due."""
        # Schedules whose task's Redis failed in this pass: tried once per pass, so one
        # unreachable Redis costs one timeout, and their due ticks wait (then run late).
        failed = await self.replay()
        misfire_before = await self.schedules.misfire_before()
        specs = [s for s in await self.schedules.all() if not s.paused]
        states = await self.schedules.states([s.name for s in specs])
        next_due = time.time() + MAX_SLEEP
        for spec in specs:
            last = float(states[spec.name].get("last_tick") or time.time())
            if spec.name in failed:
                continue
            newest = await self._tick(token, spec, last, misfire_before)
            nt = next_tick(spec, newest)
            next_due = min(next_due, nt + jitter_of(spec, nt))
        return next_due - time.time()

    async def _tick(
        self, token: str, spec: ScheduleSpec, last: float, misfire_before: float
    ) -> float:
        """Claim and push one schedule's due ticks; returns its newest claimed tick."""
        p = plan(spec, last, time.time(), misfire_before)
        if not p.run and p.skip_to is None:
            return last
        task = await self.schedules.task(spec.task)
        run = p.run
        if task is None:
            # The task was deleted after the schedule was made: its ticks pass unrun.
            if spec.name not in self._no_task:
                log.warning(
                    "schedule %s: no task named %r; its ticks are skipped", spec.name, spec.task
                )
                self._no_task.add(spec.name)
            run = []
            skip = max([*p.run, p.skip_to or 0])
        else:
            self._no_task.discard(spec.name)
            skip = p.skip_to or 0
        newest = last
        if skip:
            await self._claim(token, spec.name, skip, "")
            newest = max(newest, skip)
        for t in run:
            jid = job_id(spec.name, t)
            newest = max(newest, t)
            if await self._claim(token, spec.name, t, jid):
                assert task is not None
                if not await self._push(spec.name, task, spec.payload, jid):
                    break  # stays pending: replayed on a later pass
                lag = time.time() - (t + jitter_of(spec, t))
                await self.schedules.complete(spec.name, jid, lag=lag, from_pending=True)
        return newest

    async def _push(self, name: str, task: TaskSpec, payload: Payload, jid: str) -> bool:
        """Push a claimed job; False (logged once per outage) if the task's Redis failed:
        one unreachable task Redis must not hold up the other schedules."""
        try:
            await self.schedules.pusher.push(task, payload, jid)
        except redis.RedisError as exc:
            if name not in self._unreachable:
                log.warning(
                    "schedule %s: cannot push to task %s's Redis (%s); its jobs wait",
                    name,
                    task.name,
                    mask_text(str(exc)),
                )
                self._unreachable.add(name)
            return False
        if name in self._unreachable:
            log.warning("schedule %s: task %s's Redis is reachable again", name, task.name)
            self._unreachable.discard(name)
        return True

    async def _claim(self, token: str, name: str, tick: int, jid: str) -> bool:
        res = await self.schedules.claim(token, name, tick, jid)
        if res == -1:
            raise LostLeadership
        return res == 1

    async def replay(self) -> set[str]:
        """Push every pending job (a leader died between claim and push, or the task's
        Redis failed): once, by id. Returns the schedules whose push failed."""
        failed: set[str] = set()
        for jid in await self.schedules.pending():
            parsed = parse_job_id(jid)
            spec = await self.schedules.get(parsed[0]) if parsed else None
            task = await self.schedules.task(spec.task) if spec else None
            if parsed is None or spec is None or task is None:
                await self.schedules.drop_pending(jid)  # schedule or task deleted since
                continue
            if spec.name in failed or not await self._push(spec.name, task, spec.payload, jid):
                failed.add(spec.name)
                continue
            lag = time.time() - (parsed[1] + jitter_of(spec, parsed[1]))
            await self.schedules.complete(spec.name, jid, lag=lag, from_pending=True)
            log.info("schedule %s: pushed pending job %s (once, by its id)", spec.name, jid)
        return failed
