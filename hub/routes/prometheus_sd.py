"""GET /api/prometheus/targets: Prometheus HTTP service discovery (http_sd_configs).

Every running worker instance that reported a metrics URL becomes one target group
labelled with its task, node and instance id.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter
from pydantic import BaseModel

from ..deps import ApiDep, StoreDep
from ..store import counts

router = APIRouter(prefix="/api/prometheus", tags=["observability"], dependencies=[ApiDep])


class TargetGroup(BaseModel):
    targets: list[str]
    labels: dict[str, str]


def target_group(url: str, labels: dict[str, str]) -> TargetGroup | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    out: dict[str, str] = dict(labels)
    if parts.path and parts.path != "/metrics":
        out["__metrics_path__"] = parts.path
    if parts.scheme == "https":
        out["__scheme__"] = "https"
    return TargetGroup(targets=[f"{host}:{port}" if port else host], labels=out)


@router.get("/targets", response_model=list[TargetGroup], summary="http_sd_configs targets")
async def targets(store: StoreDep) -> list[Any]:
    out = []
    for node in await store.nodes.all():
        if not counts(node.status):
            continue
        for inst in node.instances:
            if inst.state != "running" or not inst.metrics_url:
                continue
            tg = target_group(
                inst.metrics_url,
                {"task": inst.task, "node": node.node_id, "instance_id": inst.instance_id},
            )
            if tg:
                out.append(tg)
    return out
