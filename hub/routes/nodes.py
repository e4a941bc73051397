"""The admin view of nodes: status, what runs where, errors; stop and delete."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Response, status

from ..deps import ApiDep, AuditDep, StoreDep
from ..models import Message, NodeOut
from ..store import NodeView
from ..views import node_out

log = logging.getLogger("gridq.hub")

router = APIRouter(prefix="/api/nodes", tags=["nodes"], dependencies=[ApiDep])


@router.get("", response_model=list[NodeOut], summary="every node, online or not")
async def list_nodes(store: StoreDep) -> list[NodeOut]:
    return [node_out(v) for v in await store.nodes.all()]


async def _get(store: StoreDep, node_id: str) -> NodeView:
    v = await store.nodes.get(node_id)
    if v is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no node {node_id!r}")
    return v


@router.get("/{node_id}", response_model=NodeOut, responses={404: {"description": "no such node"}})
async def get_node(node_id: str, store: StoreDep) -> NodeOut:
    return node_out(await _get(store, node_id))


@router.post(
    "/{node_id}/stop",
    response_model=Message,
    summary="drain the node: its workers stop, then the agent exits",
    responses={404: {"description": "no such node"}},
)
async def stop_node(node_id: str, store: StoreDep, audit: AuditDep) -> Message:
    await _get(store, node_id)
    await store.nodes.request_stop(node_id)
    log.info("node %s: stop requested", node_id)
    await audit("node.stop", node_id)
    await store.scheduling.schedule()
    return Message(message=f"node {node_id} will drain and stop at its next heartbeat")


@router.delete(
    "/{node_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="forget the node; its heartbeats get 410 and it must register again",
    responses={404: {"description": "no such node"}},
)
async def delete_node(node_id: str, store: StoreDep, audit: AuditDep) -> Response:
    if not await store.nodes.delete(node_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no node {node_id!r}")
    log.info("node %s deleted", node_id)
    await audit("node.delete", node_id)
    await store.scheduling.schedule()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
