"""Registered tasks: create (name taken once), read, update, delete."""

from __future__ import annotations

import redis.asyncio as aioredis

from gridq import keys

from ..models import TaskRecord
from . import scripts


class Tasks:
    def __init__(self, r: aioredis.Redis) -> None:
        self.r = r
        self._create = r.register_script(scripts.CREATE_TASK)
        self._update = r.register_script(scripts.UPDATE_TASK)

    async def get(self, name: str) -> TaskRecord | None:
        raw = await self.r.hget(keys.HUB_TASKS, name)
        return TaskRecord.model_validate_json(raw) if raw else None

    async def all(self) -> list[TaskRecord]:
        """Every task, in registration order."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zrange(keys.HUB_TASK_ORDER, 0, -1)
        pipe.hgetall(keys.HUB_TASKS)
        order, raw = await pipe.execute()
        seen = set(order)
        names = list(order) + sorted(n for n in raw if n not in seen)
        return [TaskRecord.model_validate_json(raw[n]) for n in names if n in raw]

    async def create(self, rec: TaskRecord) -> bool:
        """False if the name is taken."""
        ok = await self._create(
            keys=[keys.HUB_TASKS, keys.HUB_TASK_ORDER, keys.HUB_TASK_SEQ],
            args=[rec.spec.name, rec.model_dump_json()],
        )
        return bool(ok)

    async def put(self, rec: TaskRecord) -> bool:
        """Replace an existing task; False if it was deleted meanwhile."""
        ok = await self._update(keys=[keys.HUB_TASKS], args=[rec.spec.name, rec.model_dump_json()])
        return bool(ok)

    async def delete(self, name: str) -> bool:
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(keys.HUB_TASKS, name)
        pipe.zrem(keys.HUB_TASK_ORDER, name)
        pipe.delete(keys.hub_task_rate(name))
        res = await pipe.execute()
        return bool(res[0])
