"""GET /health: the one path without authentication (load balancers, probes)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gridq import __version__

from ..deps import StoreDep
from ..models import HealthOut

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "the hub's Redis is unreachable"}},
)
async def health(store: StoreDep) -> JSONResponse:
    try:
        await store.ping()
    except Exception:
        # No detail: this path is unauthenticated and the error could name hosts.
        body = HealthOut(status="unavailable", redis="unreachable", version=__version__)
        return JSONResponse(status_code=503, content=body.model_dump())
    return JSONResponse(HealthOut(status="ok", redis="ok", version=__version__).model_dump())
