"""Registered tasks: create (name taken once), read, update, delete."""

from __future__ import annotations

from gridq import keys

from ..models import TaskRecord
from .base import StoreBase


class TaskStore(StoreBase):
    async def get_task(self, name: str) -> TaskRecord | None:
        raw = await self.r.hget(keys.HUB_TASKS, name)
        return TaskRecord.model_validate_json(raw) if raw else None

    async def list_tasks(self) -> list[TaskRecord]:
        pipe = self.r.pipeline(transaction=False)
        pipe.zrange(keys.HUB_TASK_ORDER, 0, -1)
        pipe.hgetall(keys.HUB_TASKS)
        order, raw = await pipe.execute()
        seen = set(order)
        names = list(order) + sorted(n for n in raw if n not in seen)
        return [TaskRecord.model_validate_json(raw[n]) for n in names if n in raw]

    async def create_task(self, rec: TaskRecord) -> bool:
        ok = await self._create_task(
            keys=[keys.HUB_TASKS, keys.HUB_TASK_ORDER, keys.HUB_TASK_SEQ],
            args=[rec.spec.name, rec.model_dump_json()],
        )
        return bool(ok)

    async def put_task(self, rec: TaskRecord) -> bool:
        ok = await self._update_task(
            keys=[keys.HUB_TASKS], args=[rec.spec.name, rec.model_dump_json()]
        )
        return bool(ok)

    async def delete_task(self, name: str) -> bool:
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(keys.HUB_TASKS, name)
        pipe.zrem(keys.HUB_TASK_ORDER, name)
        pipe.delete(keys.hub_task_rate(name))
        res = await pipe.execute()
        return bool(res[0])
