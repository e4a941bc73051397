"""GET /api/events: recent notable changes (tasks, nodes, sequential mode), newest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ..deps import ApiDep, StoreDep

router = APIRouter(prefix="/api/events", tags=["observability"], dependencies=[ApiDep])


@router.get("", summary="recent events, newest first")
async def events(
    store: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[dict[str, Any]]:
    return await store.events.recent(limit)
