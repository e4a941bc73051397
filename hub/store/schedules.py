"""Schedules (docs/schedules.md): the records, their tick state, and the tick claim.

A tick is claimed once grid-wide by one script on the hub's Redis: it checks the
leader's fencing token (hub/leader.py), refuses a tick at or before the schedule's
``last_tick``, moves ``last_tick`` to it and records the job id in
``HUB_SCHEDULES_PENDING``. The job is then pushed (schedule_push.py, idempotent by job
id) and ``complete`` takes it out of pending. A leader that dies between the claim and
the push leaves the job id pending; the next leader replays it, and the push's marker
makes the replay a no-op if the job had made it into the queue.
"""

from __future__ import annotations

import builtins
import time
from typing import Any

import redis.asyncio as aioredis

from gridq import keys

from ..config import HubSettings
from ..models import TaskSpec
from ..models_schedules import ScheduleSpec
from ..schedule_times import next_tick
from .schedule_push import Pusher
from .tasks import Tasks

# KEYS: schedules, state. ARGV: name, spec JSON, now. The first tick is after `now`.
CREATE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'last_tick', ARGV[3], 'runs', 0)
return 1
"""

# KEYS: schedules, state. ARGV: name, spec JSON, now or '' (keep the tick position).
# A new timing or a resume starts after `now`: last_tick only ever moves forward, so a
# tick already claimed is never claimed again.
UPDATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then
  local last = tonumber(redis.call('HGET', KEYS[2], 'last_tick') or '0')
  if tonumber(ARGV[3]) > last then redis.call('HSET', KEYS[2], 'last_tick', ARGV[3]) end
end
return 1
"""

# KEYS: leader lease, schedules, state, pending. ARGV: fencing token, name, tick, job id
# ('' = a misfired tick left out: claimed, nothing to push).
# Returns -1 stale leader, -2 no such schedule, 0 already claimed, 1 claimed.
CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return -2 end
local last = tonumber(redis.call('HGET', KEYS[3], 'last_tick') or '0')
if tonumber(ARGV[3]) <= last then return 0 end
redis.call('HSET', KEYS[3], 'last_tick', ARGV[3])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[3], ARGV[4]) end
return 1
"""

# KEYS: pending, schedules, state. ARGV: job id, name, now, lag ('' = not a tick),
# from pending (1/0). Counts a pushed job once: a tick only when it leaves pending.
COMPLETE = """
if ARGV[5] == '1' and redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[3], 'last_run', ARGV[3], 'last_job_id', ARGV[1])
redis.call('HINCRBY', KEYS[3], 'runs', 1)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], 'lag', ARGV[4]) end
return 1
"""


def _float(v: str | None) -> float | None:
    return float(v) if v not in (None, "") else None


class Schedules:
    def __init__(self, r: aioredis.Redis, settings: HubSettings, tasks: Tasks) -> None:
        self.r = r
        self._tasks = tasks
        self.pusher = Pusher(settings.validate_redis_timeout)
        self._create = r.register_script(CREATE)
        self._update = r.register_script(UPDATE)
        self._claim = r.register_script(CLAIM)
        self._complete = r.register_script(COMPLETE)

    def close(self) -> None:
        self.pusher.close()

    # --- records --------------------------------------------------------------------

    async def get(self, name: str) -> ScheduleSpec | None:
        raw = await self.r.hget(keys.HUB_SCHEDULES, name)
        return ScheduleSpec.model_validate_json(raw) if raw else None

    async def all(self) -> list[ScheduleSpec]:
        raw = await self.r.hgetall(keys.HUB_SCHEDULES)
        return [ScheduleSpec.model_validate_json(raw[n]) for n in sorted(raw)]

    async def create(self, spec: ScheduleSpec) -> bool:
        """False if the name is taken."""
        ok = await self._create(
            keys=[keys.HUB_SCHEDULES, keys.hub_schedule_state(spec.name)],
            args=[spec.name, spec.model_dump_json(), f"{time.time():.3f}"],
        )
        return bool(ok)

    async def put(self, spec: ScheduleSpec, *, restart: bool) -> bool:
        """Replace a schedule; ``restart``: its ticks start after now (new timing, resume)."""
        ok = await self._update(
            keys=[keys.HUB_SCHEDULES, keys.hub_schedule_state(spec.name)],
            args=[spec.name, spec.model_dump_json(), f"{time.time():.3f}" if restart else ""],
        )
        return bool(ok)

    async def delete(self, name: str) -> bool:
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(keys.HUB_SCHEDULES, name)
        pipe.delete(keys.hub_schedule_state(name))
        res = await pipe.execute()
        return bool(res[0])

    async def task(self, name: str) -> TaskSpec | None:
        """The task a schedule pushes to (the one call into the tasks sub-store)."""
        rec = await self._tasks.get(name)
        return rec.spec if rec else None

    # --- tick state -----------------------------------------------------------------

    async def states(self, names: list[str]) -> dict[str, dict[str, str]]:
        pipe = self.r.pipeline(transaction=False)
        for n in names:
            pipe.hgetall(keys.hub_schedule_state(n))
        return dict(zip(names, await pipe.execute(), strict=True))

    async def list(self) -> list[dict[str, Any]]:
        """Every schedule with its state, as the API and the dashboard show it: the spec's
        fields plus next_run, last_run, last_job_id, runs and lag (unix times, seconds)."""
        specs = await self.all()
        states = await self.states([s.name for s in specs])
        return [self.view(s, states[s.name]) for s in specs]

    async def one(self, name: str) -> dict[str, Any] | None:
        spec = await self.get(name)
        if spec is None:
            return None
        return self.view(spec, (await self.states([name]))[name])

    @staticmethod
    def view(spec: ScheduleSpec, state: dict[str, str]) -> dict[str, Any]:
        last_tick = _float(state.get("last_tick")) or time.time()
        return {
            **spec.model_dump(),
            "next_run": None if spec.paused else float(next_tick(spec, last_tick)),
            "last_run": _float(state.get("last_run")),
            "last_job_id": state.get("last_job_id") or None,
            "runs": int(state.get("runs") or 0),
            "lag": _float(state.get("lag")),
        }

    async def misfire_before(self) -> float:
        return _float(await self.r.hget(keys.HUB_LEADER_INFO, "misfire_before")) or 0.0

    async def claim(self, token: str, name: str, tick: int, job_id: str) -> int:
        """Claim one tick under the fencing token (see CLAIM for the answers)."""
        return int(
            await self._claim(
                keys=[
                    keys.HUB_LEADER,
                    keys.HUB_SCHEDULES,
                    keys.hub_schedule_state(name),
                    keys.HUB_SCHEDULES_PENDING,
                ],
                args=[token, name, tick, job_id],
            )
        )

    async def pending(self) -> builtins.list[str]:
        """Job ids claimed and not yet known to be pushed, oldest tick first."""
        return list(await self.r.zrange(keys.HUB_SCHEDULES_PENDING, 0, -1))

    async def drop_pending(self, job_id: str) -> None:
        await self.r.zrem(keys.HUB_SCHEDULES_PENDING, job_id)

    async def complete(
        self, name: str, job_id: str, *, lag: float | None, from_pending: bool
    ) -> bool:
        ok = await self._complete(
            keys=[keys.HUB_SCHEDULES_PENDING, keys.HUB_SCHEDULES, keys.hub_schedule_state(name)],
            args=[
                job_id,
                name,
                f"{time.time():.3f}",
                "" if lag is None else f"{lag:.3f}",
                "1" if from_pending else "0",
            ],
        )
        return bool(ok)
