"""GET /api/audit: the audit trail (who changed what through the API), newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from ..deps import ReaderDep, StoreDep

router = APIRouter(prefix="/api/audit", tags=["observability"], dependencies=[ReaderDep])


class AuditEntry(BaseModel):
    id: str = Field(description="stream id (milliseconds-sequence); unique, ordered")
    time: float = Field(description="unix time of the change")
    actor: str = Field(description="admin, viewer or node:<id>")
    token_index: int | None = Field(
        description="position of the token used in its comma-separated setting (never its value)"
    )
    action: str = Field(description="e.g. task.create, task.patch, node.stop")
    target: str = Field(description="what was changed: a task name, a node id")
    client: str | None = Field(description="the client address (docs/security.md)")
    detail: str | None = None


@router.get("", response_model=list[AuditEntry], summary="the audit trail, newest first")
async def audit(
    store: StoreDep,
    since: Annotated[
        float | None, Query(ge=0, description="only entries at or after this unix time")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[AuditEntry]:
    return [AuditEntry.model_validate(e) for e in await store.audit.read(since, limit)]
