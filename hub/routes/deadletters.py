"""A task's dead letters through the API: retry them or purge them (audited).

``gridq dlq`` does the same straight on the task's Redis, with that Redis's
credentials; these endpoints let an admin do it with the admin token alone, and leave a
record in the audit trail (docs/security.md). The hub talks to the task's input Redis,
like its live figures do, in a worker thread with a timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import anyio.to_thread
import redis
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from gridq.queue import Queue
from gridq.redisurl import explain, mask

from ..deps import ApiDep, AuditDep, SettingsDep, StoreDep
from ..store import Store

router = APIRouter(prefix="/api/tasks", tags=["tasks"], dependencies=[ApiDep])


class DeadLetters(BaseModel):
    task: str
    queue: str
    retried: int | None = None
    purged: int | None = None


async def _on_dead(
    store: Store, name: str, timeout: float, act: Callable[[Queue], int]
) -> tuple[str, int]:
    """Run ``act`` on the task's input queue in a thread: (queue name, its count)."""
    rec = await store.tasks.get(name)
    if rec is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no task named {name!r}")
    url = rec.spec.input_redis
    q = Queue.from_url(url, rec.spec.input_queue, timeout=timeout)
    try:
        return q.name, await anyio.to_thread.run_sync(act, q)
    except redis.RedisError as exc:
        err = explain(exc, url)
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY,
            detail=str(err)
            if err
            else f"the task's Redis ({mask(url)}) failed: {type(exc).__name__}",
        ) from None
    finally:
        q.conn.close()


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
    queue, n = await _on_dead(
        store, name, settings.validate_redis_timeout, lambda q: q.retry_dead(limit)
    )
    await audit("dead.retry", name, detail=f"{n} job(s) of {queue}")
    return DeadLetters(task=name, queue=queue, retried=n)


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
    queue, n = await _on_dead(store, name, settings.validate_redis_timeout, Queue.purge_dead)
    await audit("dead.purge", name, detail=f"{n} job(s) of {queue}")
    return DeadLetters(task=name, queue=queue, purged=n)
