"""REST for the dead-letter browser: the dashboard's actions call these handlers, so a
click and an API call take the same path (and a viewer token gets 403 on both)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field, model_validator

from gridq.queue import Queue

from ..deps import ApiDep, AuditDep, StoreDep
from ..store import Store
from . import data, deadletters

router = APIRouter(
    prefix="/api/tasks/{name}/dead-letters", tags=["dead letters"], dependencies=[ApiDep]
)


class DeadPage(BaseModel):
    total: int = Field(description="dead letters in the list")
    offset: int
    next_offset: int | None = Field(description="where the next page starts; null at the end")
    scanned_to: int = Field(description="records looked at up to here (filtered pages)")
    error_types: list[str] = Field(description="error types among the newest 1,000 records")
    items: list[dict[str, Any]] = Field(
        description="newest first: index, digest, id, error_type, error, traceback, attempts,"
        " failed_at, item (a preview)"
    )


class Requeue(BaseModel):
    """Exactly one of: one record (index and digest, as a page showed them), every record
    of an error type, or all."""

    index: int | None = Field(default=None, ge=0)
    digest: str | None = Field(default=None, max_length=64)
    error_type: str | None = Field(default=None, min_length=1, max_length=200)
    all: bool = False

    @model_validator(mode="after")
    def _one_choice(self) -> Requeue:
        one = self.index is not None and bool(self.digest)
        if sum((one, self.error_type is not None, self.all)) != 1:
            raise ValueError("give index and digest, or error_type, or all=true (exactly one)")
        return self


class Moved(BaseModel):
    requeued: int = 0
    purged: int = 0
    message: str


async def _queue(store: Store, name: str) -> Queue:
    rec = await data.task_record(store, name)
    if rec is None:
        raise HTTPException(404, detail=f"no task named {name!r}")
    if rec.spec.kind != "gridq":
        raise HTTPException(409, detail="Celery tasks keep failed messages in Celery, not here")
    return data.task_queue(store, rec.spec)


@router.get("", response_model=DeadPage, summary="a page of dead letters, newest first")
async def list_dead(
    name: str,
    store: StoreDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    error_type: Annotated[
        str | None, Query(max_length=200, description="only this error type (bounded scan)")
    ] = None,
) -> DeadPage:
    q = await _queue(store, name)

    def read() -> DeadPage:
        p = deadletters.page(q, offset, limit, error_type or None)
        return DeadPage(
            total=p.total,
            offset=p.offset,
            next_offset=p.next_offset,
            scanned_to=p.scanned_to,
            error_types=deadletters.error_types(q),
            items=p.items,
        )

    return await anyio.to_thread.run_sync(read)


@router.post(
    "/requeue",
    response_model=Moved,
    summary="push dead letters back to the queue: one, an error type, or all",
    responses={409: {"description": "that record is gone (requeued or purged meanwhile)"}},
)
async def requeue(name: str, body: Requeue, store: StoreDep, audit: AuditDep) -> Moved:
    q = await _queue(store, name)

    def run() -> int:
        if body.all:
            return deadletters.requeue_all(q)
        if body.error_type is not None:
            return deadletters.requeue_filtered(q, body.error_type)
        assert body.index is not None and body.digest
        return int(deadletters.requeue_one(q, body.index, body.digest))

    n = await anyio.to_thread.run_sync(run)
    if n == 0 and body.index is not None:
        raise HTTPException(409, detail="that dead letter is gone (requeued or purged meanwhile)")
    what = f" of type {body.error_type}" if body.error_type else ""
    text = f"requeued {n} dead letter(s){what}"
    await data.event(store, f"task {name} {text}")
    await audit("dead.requeue", name, detail=text)
    return Moved(requeued=n, message=text)


@router.delete("", response_model=Moved, summary="purge every dead letter of the task")
async def purge(
    name: str,
    store: StoreDep,
    audit: AuditDep,
    confirm: Annotated[str, Query(description="the task's name, to confirm")] = "",
) -> Moved:
    if confirm != name:
        raise HTTPException(422, detail="purge not done: pass confirm=<the task's name>")
    q = await _queue(store, name)
    n = await anyio.to_thread.run_sync(deadletters.purge, q)
    text = f"purged {n} dead letter(s)"
    await data.event(store, f"task {name} {text}")
    await audit("dead.purge", name, detail=text)
    return Moved(purged=n, message=text)
