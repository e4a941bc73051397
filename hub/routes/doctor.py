"""GET /api/doctor: the doctor's Redis and task checks, run where the real URLs are.

The hub is the one place that holds the tasks' Redis URLs with their passwords, so it
runs the checks that need them (reachable, credentials, eviction policy, queues) and
returns the same JSON as ``gridq doctor --json``. ``gridq status`` shows its summary
line; Grafana can alert on ``ok``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from gridq.doctor.checks import Check
from gridq.doctor.runner import exit_code, run_server, summary
from gridq.doctor.task_checks import TaskInfo

from ..deps import ApiDep, SettingsDep, StoreDep
from ..views import node_out, render_tasks

router = APIRouter(prefix="/api/doctor", tags=["doctor"], dependencies=[ApiDep])


class DoctorOut(BaseModel):
    ok: bool = Field(description="true when no check fails (warnings allowed)")
    summary: str = Field(description="one line: counts and the first failure")
    checks: list[Check]


@router.get("", response_model=DoctorOut, summary="run the Redis and task checks")
async def doctor(
    store: StoreDep,
    settings: SettingsDep,
    task: str | None = Query(default=None, description="check only this task"),
    window: float = Query(
        default=1.0, ge=0, le=10, description="seconds between two looks at each queue"
    ),
) -> DoctorOut:
    recs = await store.tasks.all()
    rendered = await render_tasks(store, recs, live=False)
    tasks: list[TaskInfo] = []
    for rec, out in zip(recs, rendered, strict=True):
        body: dict[str, Any] = rec.spec.model_dump()
        body["status"] = out.status
        body["instances"] = out.instances.model_dump() if out.instances else None
        tasks.append(TaskInfo.from_dict(body))
    nodes = [node_out(v).model_dump() for v in await store.nodes.all()]
    results = await asyncio.to_thread(
        run_server,
        settings.redis_url,
        tasks,
        nodes,
        task=task,
        window=window,
        timeout=settings.validate_redis_timeout,
    )
    return DoctorOut(ok=exit_code(results) == 0, summary=summary(results), checks=results)
