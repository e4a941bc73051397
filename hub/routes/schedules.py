"""The user API for schedules (docs/schedules.md): create, list, change, delete, run now.

Any replica answers these; only the leader ticks (hub/schedule_ticker.py).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import redis
from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, ValidationError

from gridq.redisurl import explain, mask_text

from ..deps import ApiDep, AuditDep, StoreDep
from ..errors import not_found, unprocessable, validation_detail
from ..models_schedules import ScheduleOut, SchedulePatch, ScheduleSpec
from ..store import Store

log = logging.getLogger("gridq.hub")

router = APIRouter(prefix="/api/schedules", tags=["schedules"], dependencies=[ApiDep])

# Changing one of these moves the schedule's first tick to after now.
TIMING = ("cron", "every", "timezone")


class RunOut(BaseModel):
    job_id: str
    pushed_at: float


async def _check_task(store: Store, spec: ScheduleSpec) -> None:
    task = await store.schedules.task(spec.task)
    if task is None:
        raise unprocessable(
            "task", f"no task named {spec.task!r} (register it first)", "unknown_task"
        )
    if task.kind == "celery":
        raise unprocessable(
            "task",
            f"task {spec.task!r} runs Celery workers, which take Celery messages, not gridq jobs",
            "celery_task",
        )


async def _one(store: Store, name: str) -> dict[str, Any]:
    view = await store.schedules.one(name)
    if view is None:
        raise not_found("schedule", name)
    return view


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleOut,
    summary="create a schedule: jobs pushed to a task's input queue on a cron or every S seconds",
    responses={
        409: {"description": "a schedule with this name exists"},
        422: {"description": "invalid field (cron, timezone, unknown task, ...)"},
    },
)
async def create_schedule(body: ScheduleSpec, store: StoreDep, audit: AuditDep) -> dict[str, Any]:
    await _check_task(store, body)
    if not await store.schedules.create(body):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"a schedule named {body.name!r} exists; PATCH it or DELETE it first",
        )
    log.info("schedule %s created (task %s)", body.name, body.task)
    await store.events.add(f"schedule {body.name} created")
    await audit("schedule.create", body.name, detail=f"task {body.task}")
    return await _one(store, body.name)


@router.get("", response_model=list[ScheduleOut], summary="list schedules with their next run")
async def list_schedules(store: StoreDep) -> list[dict[str, Any]]:
    return await store.schedules.list()


@router.get(
    "/{name}", response_model=ScheduleOut, responses={404: {"description": "no such schedule"}}
)
async def get_schedule(name: str, store: StoreDep) -> dict[str, Any]:
    return await _one(store, name)


@router.patch(
    "/{name}",
    response_model=ScheduleOut,
    summary="change a schedule; a new timing, or a resume, starts with the next tick after now",
    responses={404: {"description": "no such schedule"}, 422: {"description": "invalid field"}},
)
async def patch_schedule(
    name: str, body: SchedulePatch, store: StoreDep, audit: AuditDep
) -> dict[str, Any]:
    old = await store.schedules.get(name)
    if old is None:
        raise not_found("schedule", name)
    changes = body.model_dump(exclude_unset=True)
    merged = old.model_dump()
    if "cron" in changes and "every" not in changes:
        merged["every"] = None
    if "every" in changes and "cron" not in changes:
        merged["cron"] = None
    merged.update(changes)
    try:
        spec = ScheduleSpec.model_validate(merged)
    except ValidationError as exc:
        raise HTTPException(422, detail=validation_detail(exc.errors(), ("body",))) from None
    if spec.task != old.task:
        await _check_task(store, spec)
    restart = any(getattr(spec, f) != getattr(old, f) for f in TIMING) or (
        old.paused and not spec.paused
    )
    if not await store.schedules.put(spec, restart=restart):
        raise not_found("schedule", name)
    fields = ", ".join(sorted(changes)) or "nothing"
    await store.events.add(f"schedule {name} changed: {fields}")
    await audit("schedule.patch", name, detail=f"fields: {fields}")
    return await _one(store, name)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "no such schedule"}},
)
async def delete_schedule(name: str, store: StoreDep, audit: AuditDep) -> Response:
    if not await store.schedules.delete(name):
        raise not_found("schedule", name)
    log.info("schedule %s deleted", name)
    await store.events.add(f"schedule {name} deleted")
    await audit("schedule.delete", name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{name}/run",
    response_model=RunOut,
    summary="push one job of this schedule now (its ticks are not affected)",
    responses={
        404: {"description": "no such schedule"},
        409: {"description": "the schedule's task no longer exists"},
        503: {"description": "the task's Redis is unreachable"},
    },
)
async def run_schedule(name: str, store: StoreDep, audit: AuditDep) -> RunOut:
    spec = await store.schedules.get(name)
    if spec is None:
        raise not_found("schedule", name)
    task = await store.schedules.task(spec.task)
    if task is None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"no task named {spec.task!r}")
    jid = f"sched:{name}:run-{secrets.token_hex(6)}"
    try:
        await store.schedules.pusher.push(task, spec.payload, jid)
    except redis.RedisError as exc:
        # The task's Redis, not the hub's: no hub outage, and the reason masked.
        why = explain(exc, task.input_redis)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"cannot push to task {task.name!r}: {mask_text(str(why or exc))}",
        ) from None
    await store.schedules.complete(name, jid, lag=None, from_pending=False)
    await store.events.add(f"schedule {name} run now ({jid})")
    await audit("schedule.run", name, detail=f"job {jid}")
    return RunOut(job_id=jid, pushed_at=time.time())
