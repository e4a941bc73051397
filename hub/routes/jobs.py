"""Jobs for non-Python producers: enqueue, read (info and result), cancel.

``POST /api/tasks/{name}/jobs`` enqueues on the task's input queue exactly as
``Queue.enqueue`` does (a job record, unique keys, delay/ETA); the record is read and
cancelled through ``gridq.jobs.JobHandle``. The hub talks to the task's own Redis.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridq import protocol
from gridq.jobs import UNKNOWN, JobHandle

from ..audit import AuditDep
from ..deps import ApiDep, StoreDep
from ..errors import unprocessable
from .jobs_store import TaskQueues, task_spec

router = APIRouter(prefix="/api/tasks", tags=["jobs"], dependencies=[ApiDep])


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str | None = Field(
        None, min_length=1, description="handler name; default: the task's name"
    )
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(0, ge=0, le=protocol.MAX_PRIORITY)
    delay: float | None = Field(None, ge=0, description="seconds to wait before it may run")
    eta: datetime | None = Field(None, description="aware date-time it may run from")
    key: str | None = Field(None, min_length=1, description="unique key in this queue")

    @model_validator(mode="after")
    def _one_wait(self) -> JobCreate:
        if self.delay is not None and self.eta is not None:
            raise ValueError("give delay or eta, not both")
        if self.eta is not None and self.eta.utcoffset() is None:
            raise ValueError("eta needs a time zone (e.g. 2026-12-01T12:00:00Z)")
        return self


class JobCreated(BaseModel):
    id: str
    status: str


class JobCancelOut(BaseModel):
    id: str
    cancelled: bool
    status: str


def _queues(request: Request) -> TaskQueues:
    qs = getattr(request.app.state, "task_queues", None)
    if qs is None:
        qs = request.app.state.task_queues = TaskQueues()
    return qs  # type: ignore[no-any-return]


async def _handle(request: Request, store: Any, name: str, job_id: str) -> JobHandle:
    spec = await task_spec(store, name)
    return _queues(request).queue(spec).job(job_id)


JobId = Annotated[str, "job id"]


@router.post(
    "/{name}/jobs",
    status_code=status.HTTP_201_CREATED,
    response_model=JobCreated,
    summary="enqueue a job on the task's input queue",
    responses={404: {"description": "no such task"}, 422: {"description": "invalid field"}},
)
async def create_job(
    name: str, body: JobCreate, request: Request, store: StoreDep, audit: AuditDep
) -> JobCreated:
    spec = await task_spec(store, name)
    if spec.kind != "gridq":
        raise unprocessable("task", f"task {name!r} is a {spec.kind} task: no gridq jobs", "kind")
    q = _queues(request).queue(spec)

    def enqueue() -> JobHandle:
        return q.enqueue(
            body.task or name,
            *body.args,
            _priority=body.priority,
            _delay=body.delay,
            _eta=body.eta,
            _key=body.key,
            **body.kwargs,
        )

    h = await anyio.to_thread.run_sync(enqueue)
    st = await anyio.to_thread.run_sync(h.status)
    await audit("job.create", name, detail=f"job {h.id} ({body.task or name})")
    return JobCreated(id=h.id, status=st)


@router.get(
    "/{name}/jobs/{job_id}",
    summary="a job's status, times, consumer, node, error fields and result",
    responses={404: {"description": "no such task, or no record of this job"}},
)
async def get_job(name: str, job_id: JobId, request: Request, store: StoreDep) -> dict[str, Any]:
    h = await _handle(request, store, name, job_id)
    info = await anyio.to_thread.run_sync(h.info)
    if info["status"] == UNKNOWN:
        raise HTTPException(404, detail=f"no record of job {job_id!r} (unknown or expired)")
    return info


@router.delete(
    "/{name}/jobs/{job_id}",
    response_model=JobCancelOut,
    summary="cancel a job: it never starts, or its worker interrupts it",
    responses={404: {"description": "no such task, or no record of this job"}},
)
async def cancel_job(
    name: str, job_id: JobId, request: Request, store: StoreDep, audit: AuditDep
) -> JobCancelOut:
    h = await _handle(request, store, name, job_id)
    if await anyio.to_thread.run_sync(h.status) == UNKNOWN:
        raise HTTPException(404, detail=f"no record of job {job_id!r} (unknown or expired)")
    done = await anyio.to_thread.run_sync(h.cancel)
    await audit("job.cancel", name, detail=f"job {job_id}: {'cancelled' if done else 'too late'}")
    return JobCancelOut(id=job_id, cancelled=done, status=await anyio.to_thread.run_sync(h.status))
