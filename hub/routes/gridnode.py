"""IDM-GridCore's node protocol, so unchanged GridNode agents join the hub.

``POST /gridnode/register``, ``POST /gridnode/heartbeat``, ``GET /gridnode/task``, with
GridCore's request and response JSON exactly (hub/gridcore.py). The bearer token is
checked as the node join token (GRIDQ_NODE_TOKEN), in constant time. What a GridNode
runs and how it counts: docs/migration.md.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query

from ..deps import NodeJoinDep, StoreDep
from ..gridcore import (
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
    TaskConfig,
    platform_of,
)
from ..gridnode_store import GridNodeStore

log = logging.getLogger("gridq.hub")

router = APIRouter(
    prefix="/gridnode",
    tags=["IDM-GridCore node protocol"],
    dependencies=[NodeJoinDep],
    responses={401: {"description": "missing or wrong node join token"}},
)


@router.post(
    "/register",
    response_model=RegisterResponse,
    summary="a GridNode joins (or re-joins with its saved node_id)",
)
async def register(req: RegisterRequest, store: StoreDep) -> RegisterResponse:
    gs = GridNodeStore(store)
    platform = platform_of(req.architecture)
    node_id = await gs.register(req, platform)
    task = await gs.current_task(platform)
    log.info(
        "GridNode %s registered (%s, %s, %d containers)",
        node_id,
        req.hostname,
        platform,
        req.cpu_count,
    )
    return RegisterResponse(node_id=node_id, current_task=task)


@router.post(
    "/heartbeat",
    response_model=HeartbeatResponse,
    summary="a GridNode reports; the answer says whether to stop",
)
async def heartbeat(hb: HeartbeatRequest, store: StoreDep) -> HeartbeatResponse:
    return HeartbeatResponse(stop_requested=await GridNodeStore(store).heartbeat(hb))


@router.get(
    "/task",
    response_model=TaskConfig | None,
    summary="the task a GridNode runs now (null: none)",
)
async def current_task(
    store: StoreDep, platform: Annotated[str, Query(max_length=64)] = "linux/amd64"
) -> TaskConfig | None:
    return await GridNodeStore(store).current_task(platform)
