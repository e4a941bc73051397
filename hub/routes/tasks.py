"""The user API for tasks: register, list, change, delete, pause; sequential mode."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import ValidationError

from gridq.errors import RedisAuthError, RedisUnavailable
from gridq.redisurl import check, mask

from .. import task_acl
from ..deps import ApiDep, AuditDep, Recorder, SettingsDep, StoreDep
from ..errors import not_found, unprocessable, validation_detail
from ..gridcore import SequenceMessage, sequence_message
from ..gridnode_store import GridNodeStore
from ..models import Message, TaskCreate, TaskOut, TaskPatch, TaskRecord, TaskSpec
from ..store import Store, worker_spec
from ..views import render_tasks

log = logging.getLogger("gridq.hub")

router = APIRouter(prefix="/api/tasks", tags=["tasks"], dependencies=[ApiDep])

ValidateQ = Annotated[
    bool, Query(description="connect to the task's Redis (AUTH + PING) before accepting it")
]
LiveQ = Annotated[bool, Query(description="include live queue figures (one Redis call per task)")]


async def _check_redis(spec: TaskSpec, timeout: float, fields: set[str] | None = None) -> None:
    """AUTH + PING the task's Redis URLs; 422 with the precise, masked reason."""
    targets = [("input_redis", spec.input_redis)]
    if spec.output_redis and spec.output_redis != spec.input_redis:
        targets.append(("output_redis", spec.output_redis))
    for field, url in targets:
        if fields is not None and field not in fields:
            continue
        try:
            await anyio.to_thread.run_sync(check, url, timeout)
        except (RedisAuthError, RedisUnavailable) as exc:
            raise unprocessable(field, str(exc)) from None


async def task_record(store: Store, name: str) -> TaskRecord:
    """The task's record, or a 404 (the jobs routes look tasks up here too)."""
    rec = await store.tasks.get(name)
    if rec is None:
        raise not_found("task", name)
    return rec


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskOut,
    summary="register a task (IDM-GridCore ComputeHub bodies accepted unchanged)",
    responses={
        409: {"description": "a task with this name exists"},
        422: {"description": "invalid field, or its Redis check failed"},
    },
)
async def create_task(
    body: TaskCreate,
    store: StoreDep,
    settings: SettingsDep,
    audit: AuditDep,
    validate: ValidateQ = True,
) -> TaskOut:
    spec = body.normalised()
    if await store.tasks.get(spec.name) is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"a task named {spec.name!r} exists; PATCH it or DELETE it first",
        )
    if validate:
        await _check_redis(spec, settings.validate_redis_timeout)
    spec = await task_acl.provision(spec, settings)
    now = time.time()
    rec = TaskRecord(
        spec=spec, spec_hash=worker_spec(spec).spec_hash, created_at=now, updated_at=now
    )
    if not await store.tasks.create(rec):
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"a task named {spec.name!r} exists")
    log.info(
        "task %s registered (input %s queue %s)",
        spec.name,
        mask(spec.input_redis),
        spec.input_queue,
    )
    await store.events.add(f"task {spec.name} registered")
    await audit("task.create", spec.name)
    await store.scheduling.schedule()
    return (await render_tasks(store, [rec], live=False))[0]


@router.get("", response_model=list[TaskOut], summary="list tasks with live figures")
async def list_tasks(store: StoreDep, live: LiveQ = True) -> list[TaskOut]:
    return await render_tasks(store, await store.tasks.all(), live)


@router.post(
    "/next",
    response_model=SequenceMessage,
    summary="sequential mode: finish the current task and start the next one",
    responses={409: {"description": "the hub is not in sequential mode"}},
)
async def next_task(store: StoreDep, settings: SettingsDep, audit: AuditDep) -> SequenceMessage:
    return await _sequence(store, settings.scheduling, "next", audit)


@router.post(
    "/finish",
    response_model=SequenceMessage,
    summary="sequential mode: finish the current task (the last one: nothing runs)",
    responses={409: {"description": "the hub is not in sequential mode"}},
)
async def finish_task(store: StoreDep, settings: SettingsDep, audit: AuditDep) -> SequenceMessage:
    return await _sequence(store, settings.scheduling, "finish", audit)


async def _sequence(store: Store, scheduling: str, action: str, audit: Recorder) -> SequenceMessage:
    if scheduling != "sequential":
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail="the hub schedules in parallel; /next and /finish need GRIDQ_HUB_SCHEDULING=sequential",
        )
    previous = await GridNodeStore(store).current_name()
    changed, msg, current = await store.scheduling.sequence(action)
    await audit(f"sequence.{action}", current or "", detail=msg)
    return sequence_message(
        Message(ok=True, changed=changed, message=msg, current=current), previous
    )


@router.get("/{name}", response_model=TaskOut, responses={404: {"description": "no such task"}})
async def get_task(name: str, store: StoreDep, live: LiveQ = True) -> TaskOut:
    return (await render_tasks(store, [await task_record(store, name)], live))[0]


@router.patch(
    "/{name}",
    response_model=TaskOut,
    summary="change a task; nodes roll workers over to the new spec",
    responses={
        404: {"description": "no such task"},
        422: {"description": "invalid field, or its Redis check failed"},
    },
)
async def patch_task(
    name: str,
    body: TaskPatch,
    store: StoreDep,
    settings: SettingsDep,
    audit: AuditDep,
    validate: ValidateQ = True,
) -> TaskOut:
    rec = await task_record(store, name)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    merged = rec.spec.as_create()
    merged.update(changes)
    try:
        spec = TaskCreate.model_validate(merged).normalised()
    except ValidationError as exc:
        raise HTTPException(422, detail=validation_detail(exc.errors(), ("body",))) from None
    if validate:
        touched = {f for f in ("input_redis", "output_redis") if f in changes}
        if touched:
            await _check_redis(
                spec,
                settings.validate_redis_timeout,
                touched | ({"output_redis"} if "input_redis" in touched else set()),
            )
    spec = await task_acl.provision(spec, settings, rec.spec)
    new_hash = worker_spec(spec).spec_hash
    rec = TaskRecord(
        spec=spec,
        spec_hash=new_hash,
        paused=rec.paused,
        finished=rec.finished,
        created_at=rec.created_at,
        updated_at=time.time(),
    )
    fields = ", ".join(sorted(changes)) or "nothing"
    out = await _save(store, rec, f"changed: {fields}")
    await audit("task.patch", name, detail=f"fields: {fields}")
    return out


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "no such task"}},
)
async def delete_task(
    name: str, store: StoreDep, settings: SettingsDep, audit: AuditDep
) -> Response:
    gone = await store.tasks.get(name)
    if not await store.tasks.delete(name):
        raise not_found("task", name)
    await task_acl.remove(gone.spec if gone else None, settings)
    log.info("task %s deleted", name)
    await store.events.add(f"task {name} deleted")
    await audit("task.delete", name)
    await store.scheduling.schedule()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _save(store: Store, rec: TaskRecord, what: str) -> TaskOut:
    """Store a changed task (404 if it was deleted meanwhile), log the event, re-place."""
    name = rec.spec.name
    if not await store.tasks.put(rec):
        raise not_found("task", name)
    await store.events.add(f"task {name} {what}")
    await store.scheduling.schedule()
    return (await render_tasks(store, [rec], live=False))[0]


async def _set_paused(store: Store, name: str, paused: bool) -> TaskOut:
    rec = await task_record(store, name)
    rec.paused = paused
    rec.updated_at = time.time()
    return await _save(store, rec, "paused" if paused else "resumed")


@router.post(
    "/{name}/pause",
    response_model=TaskOut,
    summary="stop the task's workers (desired replicas 0) until resumed",
    responses={404: {"description": "no such task"}},
)
async def pause_task(name: str, store: StoreDep, audit: AuditDep) -> TaskOut:
    out = await _set_paused(store, name, True)
    await audit("task.pause", name)
    return out


@router.post(
    "/{name}/resume",
    response_model=TaskOut,
    summary="undo pause",
    responses={404: {"description": "no such task"}},
)
async def resume_task(name: str, store: StoreDep, audit: AuditDep) -> TaskOut:
    out = await _set_paused(store, name, False)
    await audit("task.resume", name)
    return out
