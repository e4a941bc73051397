"""A task's dead letters through the API: retry them or purge them (audited).

``gridq dlq`` does the same straight on the task's Redis, with that Redis's
credentials; these endpoints let an admin do it with the admin token alone, and leave a
record in the audit trail (docs/security.md). The hub talks to the task's input Redis,
like its live figures do, in a worker thread with a timeout.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
import redis
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from gridq.queue import Queue
from gridq.redisurl import explain, mask

from ..deps import ApiDep, AuditDep, SettingsDep, StoreDep

router = APIRouter(prefix="/api/tasks", tags=["tasks"], dependencies=[ApiDep])


class DeadLetters(BaseModel):
    task: str
    queue: str
    retried: int | None = None
    purged: int | None = None


async def _queue(store: StoreDep, name: str, timeout: float) -> tuple[Queue, str]:
    rec = await store.tasks.get(name)
    if rec is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no task named {name!r}")
    url = rec.spec.input_redis
    return Queue.from_url(url, rec.spec.input_queue, timeout=timeout), url


def _failed(url: str, exc: redis.RedisError) -> HTTPException:
    err = explain(exc, url)
    return HTTPException(
        status.HTTP_502_BAD_GATEWAY,
        detail=str(err) if err else f"the task's Redis ({mask(url)}) failed: {type(exc).__name__}",
    )


@router.post(
    "/{name}/dead/retry",
    response_model=DeadLetters,
    summary="move the task's dead jobs back to its queue (oldest first)",
    responses={
        404: {"description": "no such task"},
        502: {"description": "the task's Redis failed"},
    },
)
async def retry_dead(
    name: str,
    store: StoreDep,
    settings: SettingsDep,
    audit: AuditDep,
    limit: Annotated[int | None, Query(ge=1, description="at most this many")] = None,
) -> DeadLetters:
    q, url = await _queue(store, name, settings.validate_redis_timeout)
    try:
        n = await anyio.to_thread.run_sync(q.retry_dead, limit)
    except redis.RedisError as exc:
        raise _failed(url, exc) from None
    finally:
        q.conn.close()
    await audit("dead.retry", name, detail=f"{n} job(s) of {q.name}")
    return DeadLetters(task=name, queue=q.name, retried=n)


@router.delete(
    "/{name}/dead",
    response_model=DeadLetters,
    summary="delete the task's dead jobs",
    responses={
        404: {"description": "no such task"},
        502: {"description": "the task's Redis failed"},
    },
)
async def purge_dead(
    name: str, store: StoreDep, settings: SettingsDep, audit: AuditDep
) -> DeadLetters:
    q, url = await _queue(store, name, settings.validate_redis_timeout)
    try:
        n = await anyio.to_thread.run_sync(q.purge_dead)
    except redis.RedisError as exc:
        raise _failed(url, exc) from None
    finally:
        q.conn.close()
    await audit("dead.purge", name, detail=f"{n} job(s) of {q.name}")
    return DeadLetters(task=name, queue=q.name, purged=n)
