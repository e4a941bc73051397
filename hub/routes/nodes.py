"""The admin view of nodes: status, what runs where, errors; stop and delete."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, HTTPException, Response, status

from ..deps import AdminDep, StoreDep
from ..gridcore import node_fields, rfc3339
from ..models import Message, NodeInstanceOut, NodeOut
from ..store import NodeView

log = logging.getLogger("gridq.hub")

router = APIRouter(prefix="/api/nodes", tags=["nodes"], dependencies=[AdminDep])


def node_out(v: NodeView) -> NodeOut:
    info = v.info
    instances = v.instances
    running: dict[str, int] = {}
    errors = list(v.record.get("errors", []))
    for i in instances:
        if i.state == "running":
            running[i.task] = running.get(i.task, 0) + 1
        if i.error:
            errors.append(f"{i.task} instance {i.index} ({i.state}): {i.error}")
        elif i.state in ("exited", "crashloop", "failed") and i.exit_code not in (None, 0):
            errors.append(f"{i.task} instance {i.index} {i.state} with exit code {i.exit_code}")
    if v.status == "offline" and v.last_seen is not None:
        errors.insert(0, f"no heartbeat for {time.time() - v.last_seen:.0f} s: the node is offline")
    return NodeOut(
        node_id=v.node_id,
        status=v.status,  # type: ignore[arg-type]
        hostname=info.hostname,
        arch=info.arch,
        cpus=info.cpus,
        memory_mb=info.memory_mb,
        labels=info.labels,
        runtime=info.runtime,
        parallelism=info.parallelism,
        container_memory_mb=info.container_memory_mb,
        version=info.version,
        metrics_url=info.metrics_url,
        registered_at=v.meta.get("registered_at"),
        last_seen=rfc3339(v.last_seen),
        seconds_since_heartbeat=round(time.time() - v.last_seen, 3) if v.last_seen else None,
        stop_requested=bool(v.meta.get("stop")),
        errors=errors,
        assigned=v.assigned,
        running=running,
        instances=[NodeInstanceOut(**i.model_dump()) for i in instances],
        **node_fields(
            v.node_id, v.record, info.arch, info.cpus, sum(running.values()), len(errors)
        ),
    )


@router.get("", response_model=list[NodeOut], summary="every node, online or not")
async def list_nodes(store: StoreDep) -> list[NodeOut]:
    return [node_out(v) for v in await store.list_nodes()]


async def _get(store: StoreDep, node_id: str) -> NodeView:
    v = await store.get_node(node_id)
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
async def stop_node(node_id: str, store: StoreDep) -> Message:
    await _get(store, node_id)
    await store.request_stop(node_id)
    log.info("node %s: stop requested", node_id)
    await store.schedule()
    return Message(message=f"node {node_id} will drain and stop at its next heartbeat")


@router.delete(
    "/{node_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="forget the node; its heartbeats get 410 and it must register again",
    responses={404: {"description": "no such node"}},
)
async def delete_node(node_id: str, store: StoreDep) -> Response:
    if not await store.delete_node(node_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no node {node_id!r}")
    log.info("node %s deleted", node_id)
    await store.schedule()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
