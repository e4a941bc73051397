"""The node protocol (docs/node-protocol.md): register, heartbeat, leave.

Models are gridq.nodeproto's, shared with the node agent.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from gridq.nodeproto import (
    PROTOCOL_VERSION,
    Heartbeat,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
)

from ..audit import record
from ..auth import Principal
from ..deps import NodeJoinDep, NodeSecretDep, StoreDep, unauthorized
from ..store import NodeAuthError, NodeGone

log = logging.getLogger("gridq.hub")

router = APIRouter(prefix="/api/node", tags=["node protocol"])

_GONE = "this node was deleted from the hub: register again (POST /api/node/register)"
_AUTH = "unknown node or wrong secret: register again (POST /api/node/register)"


@router.post(
    "/register",
    response_model=RegisterResponse,
    dependencies=[NodeJoinDep],
    summary="join the grid (node join token)",
    responses={401: {"description": "missing or wrong node join token"}},
)
async def register(
    req: RegisterRequest,
    store: StoreDep,
    request: Request,
    assignments: Annotated[
        bool,
        Query(
            description="also answer with this node's assignments and spec_version, as a "
            "heartbeat answer carries them, so the node starts its workers right away"
        ),
    ] = False,
) -> Response:
    if req.protocol != PROTOCOL_VERSION:
        raise HTTPException(
            422,
            detail=f"node protocol {req.protocol} is not supported; this hub speaks {PROTOCOL_VERSION}",
        )
    resp, resumed = await store.nodes.register(req)
    log.info(
        "node %s %s (%s, %s, %d slots)",
        resp.node_id,
        "resumed" if resumed else "registered",
        req.info.hostname,
        req.info.arch,
        req.info.parallelism,
    )
    joined: Principal = request.state.principal
    node = Principal("node", joined.token_index, resp.node_id)
    await record(
        request, "node.resume" if resumed else "node.register", resp.node_id, principal=node
    )
    # Place work now, so the answer (?assignments=true) or else the first heartbeat
    # already carries assignments.
    await store.scheduling.schedule()
    return Response(
        content=await store.nodes.register_answer(resp, assignments), media_type="application/json"
    )


@router.post(
    "/{node_id}/heartbeat",
    response_model=HeartbeatResponse,
    summary="report status, receive assignments (node secret)",
    responses={
        401: {"description": "unknown node or wrong secret: register again"},
        410: {"description": "the node was deleted: register again"},
    },
)
async def heartbeat(
    node_id: str, hb: Heartbeat, secret: NodeSecretDep, store: StoreDep
) -> Response:
    # Successful heartbeats are answered by hub/fastpath.py before the router; this
    # route answers the rest (401/410/422/503) and documents the endpoint.
    try:
        body = await store.nodes.heartbeat(node_id, secret, hb)
    except NodeGone:
        raise HTTPException(status.HTTP_410_GONE, detail=_GONE) from None
    except NodeAuthError:
        raise unauthorized(_AUTH) from None
    # Pre-serialised by the store: the assignments are stored as JSON ready to send.
    return Response(content=body, media_type="application/json")


@router.post(
    "/{node_id}/leave",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="the agent exits (after a stop request) (node secret)",
    responses={
        401: {"description": "unknown node or wrong secret"},
        410: {"description": "deleted"},
    },
)
async def leave(node_id: str, secret: NodeSecretDep, store: StoreDep, request: Request) -> Response:
    try:
        await store.nodes.authenticate(node_id, secret)
    except NodeGone:
        raise HTTPException(status.HTTP_410_GONE, detail=_GONE) from None
    except NodeAuthError:
        raise unauthorized(_AUTH) from None
    await store.nodes.leave(node_id)
    log.info("node %s left", node_id)
    await record(request, "node.leave", node_id, principal=Principal("node", None, node_id))
    await store.scheduling.schedule()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
