"""The pure steps of a scheduling pass (placement_pass.py runs them): desired replica
counts, the fingerprint that lets an unchanged grid skip the pass, and placement turned
into the per-node assignment JSON the heartbeat answer carries."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..models import TaskRecord
from ..scheduler import NodeCapacity, autoscale_replicas, place
from .base import dumps
from .specs import demand_of, worker_spec


def current_task(tasks: list[TaskRecord], cursor: str | None) -> str | None:
    """Sequential mode: the task that runs now."""
    by_name = {t.spec.name: t for t in tasks}
    if cursor and cursor in by_name and not by_name[cursor].finished:
        return cursor
    for t in tasks:
        if not t.finished:
            return t.spec.name
    return None


def unfinished_after(tasks: list[TaskRecord], name: str) -> list[TaskRecord]:
    """Sequential mode: the tasks still to run after ``name``, in order."""
    names = [t.spec.name for t in tasks]
    return [t for t in tasks[names.index(name) + 1 :] if not t.finished]


def drained(st: dict[str, Any], start_processed: int) -> bool:
    """Sequential auto-advance: the current task's queue is empty and it did some work."""
    if "error" in st or st.get("depth") or st.get("in_flight") or st.get("delayed"):
        return False
    return int(st.get("processed") or 0) > start_processed


def desired_counts(
    tasks: list[TaskRecord],
    stats: dict[str, dict[str, Any]],
    sequential: bool,
    current: str | None,
) -> dict[str, int]:
    """Replicas wanted per task: fixed, or autoscaled on the backlog; none for a paused
    or finished task, nor (sequential mode) for any task but the current one."""
    desired: dict[str, int] = {}
    for t in tasks:
        sp = t.spec
        n = sp.replicas
        if sp.autoscale:
            st = stats.get(sp.name, {})
            if "error" in st:
                n = sp.autoscale.min
            else:
                backlog = int(st.get("depth") or 0) + int(st.get("in_flight") or 0)
                n = autoscale_replicas(
                    backlog,
                    sp.autoscale.min,
                    sp.autoscale.max,
                    sp.autoscale.target_depth_per_worker,
                )
        if t.paused or t.finished or (sequential and sp.name != current):
            n = 0
        desired[sp.name] = n
    return desired


def fingerprint(
    tasks: list[TaskRecord],
    desired: dict[str, int],
    online: list[tuple[str, str]],
    old_assign: dict[str, str],
) -> str:
    """Everything that decides placement: when it equals the last pass's, the pass (the
    usual case for the periodic one) can skip the work and the writes."""
    fp = hashlib.sha256()
    for t in tasks:
        fp.update(t.model_dump_json(exclude={"updated_at", "created_at"}).encode())
    fp.update(dumps(desired).encode())
    for nid, cap in online:
        fp.update(nid.encode() + b"\0" + cap.encode())
    for nid in sorted(old_assign):
        fp.update(nid.encode() + b"\0" + old_assign[nid].encode())
    return fp.hexdigest()


def stored_fingerprint(fp: str, changed: dict[str, str], removed: list[str]) -> str:
    # The fingerprint covers the assignments read at the start; when this pass rewrote
    # them, the next pass must not skip (it has to confirm the new state is stable).
    return "" if changed or removed else fp


def compute(
    tasks: list[TaskRecord],
    desired: dict[str, int],
    online: list[tuple[str, str]],
    old_assign: dict[str, str],
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Placement and the per-node assignment JSON (pure; runs in a worker thread)."""
    capacities = []
    for nid, cap in online:
        info = json.loads(cap)["info"]
        capacities.append(
            NodeCapacity(
                node_id=nid,
                arch=info["arch"],
                runtime=info["runtime"],
                slots=int(info["parallelism"]),
                memory_mb=int(info.get("memory_mb") or 0),
                container_memory_mb=int(info.get("container_memory_mb") or 1024),
                labels=info.get("labels") or {},
            )
        )
    previous = {
        nid: {a["task"]: a["replicas"] for a in json.loads(raw)} for nid, raw in old_assign.items()
    }
    result = place([demand_of(t.spec, desired[t.spec.name]) for t in tasks], capacities, previous)
    # Each task's spec serialised once, not once per node.
    spec_json = {t.spec.name: dumps(worker_spec(t.spec).model_dump(mode="json")) for t in tasks}
    new_assign: dict[str, str] = {}
    for nid, per_task in result.placement.items():
        items = ",".join(
            f'{{"replicas":{n},"spec":{spec_json[name]},"task":{json.dumps(name)}}}'
            for name, n in sorted(per_task.items())
        )
        new_assign[nid] = f"[{items}]"
    summary = {
        name: {
            "desired": desired[name],
            "placed": result.placed(name),
            "unplaced": result.unplaced.get(name, 0),
        }
        for name in desired
    }
    return new_assign, summary
