"""Tasks and nodes as the API shows them, and the one count of running instances."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from gridq.doctor.placement import runtime_mismatch

from .gridcore import node_fields, rfc3339
from .models import Instances, NodeInstanceOut, NodeOut, TaskOut, TaskRecord
from .store import NodeView, Store


def running_on(instances: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Running instances per task among one node's reported instances (raw heartbeat
    dicts: no pydantic models on this path, GET /api/tasks reads every node)."""
    out: dict[str, int] = {}
    for inst in instances:
        if inst.get("state") == "running" and inst.get("task"):
            out[inst["task"]] = out.get(inst["task"], 0) + 1
    return out


def running_by_task(records: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Running instances per task and node, from the heartbeat records of the nodes
    that count (store.nodes.live_records())."""
    out: dict[str, dict[str, int]] = {}
    for nid, record in records.items():
        for task, n in running_on(record.get("instances", [])).items():
            out.setdefault(task, {})[nid] = n
    return out


def task_status(rec: TaskRecord, scheduling: str, current: str | None) -> str:
    if rec.finished:
        return "finished"
    if rec.paused:
        return "paused"
    if scheduling == "sequential" and rec.spec.name != current:
        return "waiting"
    return "active"


async def render_tasks(store: Store, recs: list[TaskRecord], live: bool) -> list[TaskOut]:
    """Tasks with their status, instance counts and (``live``) queue figures."""
    summary = await store.scheduling.summary()
    running = running_by_task(await store.nodes.live_records())
    current = (await store.scheduling.state()).get("seq_current") or None
    stats = await store.figures.stats_many(r.spec for r in recs) if live else {}
    short = [
        r
        for r in recs
        if int(summary.get(r.spec.name, {}).get("placed", 0))
        < int(summary.get(r.spec.name, {}).get("desired", 0))
    ]
    online = await _online_runtimes(store) if short else []
    out = []
    for rec in recs:
        name = rec.spec.name
        sm = summary.get(name, {})
        counts = Instances(
            desired=int(sm.get("desired", 0)),
            placed=int(sm.get("placed", 0)),
            running=sum(running.get(name, {}).values()),
            by_node=running.get(name, {}),
            unplaced=_unplaced(rec, online) if rec in short else None,
        )
        figures = await store.figures.live(rec.spec, stats[name]) if live else None
        status = task_status(rec, store.settings.scheduling, current)
        out.append(TaskOut.build(rec, status, figures, counts))
    return out


async def _online_runtimes(store: Store) -> list[dict[str, str]]:
    """The runtime of every online node, as gridq.doctor.placement reads nodes."""
    out = []
    for _nid, caps in await store.nodes.online():
        info = json.loads(caps).get("info", {})
        out.append({"runtime": str(info.get("runtime") or "docker"), "status": "online"})
    return out


def _unplaced(rec: TaskRecord, online: list[dict[str, str]]) -> str | None:
    found = runtime_mismatch(rec.spec.model_dump(), online)
    return f"{found[0]}. {found[1]}" if found else None


def node_out(v: NodeView) -> NodeOut:
    info = v.info
    instances = v.instances
    running = running_on(v.record.get("instances", []))
    errors = list(v.record.get("errors", []))
    for i in instances:
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
