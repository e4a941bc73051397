"""Every call the dashboard makes into the hub's store and REST handlers, in one module.

The store is composed (store.tasks / nodes / figures / events / scheduling / schedules);
this adapter is the one place that knows its shape. Actions call the REST handlers themselves, so a click in
the dashboard and a call to the API take the same code path (events, scheduling pass,
404s included).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from gridq.nodeproto import InstanceStatus
from gridq.queue import Queue

from .. import views
from ..audit import Recorder
from ..config import HubSettings
from ..deps import get_settings, get_store
from ..models import NodeOut, TaskOut, TaskPatch, TaskRecord, TaskSpec
from ..models_schedules import SchedulePatch
from ..routes import doctor as doctor_routes
from ..routes import nodes as node_routes
from ..routes import schedules as schedule_routes
from ..routes import tasks as task_routes
from ..store import NodeView, Store


def hub_redis(store: Store) -> aioredis.Redis:
    """The hub's own Redis (sessions, chart history)."""
    return store.r


store_of = get_store  # the hub's Store and HubSettings of a request
settings_of = get_settings


# --- reads ----------------------------------------------------------------------------


async def task_records(store: Store) -> list[TaskRecord]:
    return await store.tasks.all()


async def task_record(store: Store, name: str) -> TaskRecord | None:
    return await store.tasks.get(name)


async def task_out(store: Store, rec: TaskRecord) -> TaskOut:
    """One task as GET /api/tasks/{name}?live=false answers it."""
    return (await views.render_tasks(store, [rec], live=False))[0]


async def task_rows(store: Store, recs: list[TaskRecord]) -> list[dict[str, Any]]:
    """Name, kind, status, desired and running instances of many tasks: what GET
    /api/tasks computes, without building its full answer (masked URLs, spec) per task."""
    summary = await store.scheduling.summary()
    running = views.running_by_task(await store.nodes.live_records())
    current = (await store.scheduling.state()).get("seq_current") or None
    rows = []
    for rec in recs:
        name = rec.spec.name
        rows.append(
            {
                "name": name,
                "kind": rec.spec.kind,
                "status": views.task_status(rec, store.settings.scheduling, current),
                "desired": int(summary.get(name, {}).get("desired", 0)),
                "running": sum(running.get(name, {}).values()),
            }
        )
    return rows


async def task_stats(store: Store, specs: list[TaskSpec]) -> dict[str, dict[str, Any]]:
    """Live figures from each task's own Redis (one thread call per task)."""
    return await store.figures.stats_many(specs)


async def node_views(store: Store) -> list[NodeView]:
    """Every node as read back (status derived); cheap: no API model per node."""
    return await store.nodes.all()


def node_api_view(v: NodeView) -> NodeOut:
    """A node as GET /api/nodes/{id} answers it."""
    return views.node_out(v)


def instances_of(views: list[NodeView], task: str) -> list[tuple[NodeView, InstanceStatus]]:
    """The instances of ``task`` the nodes report, with their node."""
    out = []
    for v in views:
        for raw in v.record.get("instances", []):
            if raw.get("task") == task:
                out.append((v, InstanceStatus.model_validate(raw)))
    return out


async def node_out(store: Store, node_id: str) -> NodeOut | None:
    v = await store.nodes.get(node_id)
    return node_api_view(v) if v else None


async def events(store: Store, limit: int) -> list[dict[str, Any]]:
    return await store.events.recent(limit)


async def doctor(store: Store, settings: HubSettings, window: float) -> Any:
    return await doctor_routes.doctor(store, settings, task=None, window=window)


def task_queue(store: Store, spec: TaskSpec) -> Queue:
    """The task's input queue on its own Redis (sync client; call from a thread)."""
    return store.figures.queue(spec.input_redis, spec.input_queue)


def task_conn(store: Store, spec: TaskSpec) -> redis.Redis:
    return task_queue(store, spec).conn


async def audit(store: Store, limit: int, before: str | None) -> list[dict[str, Any]]:
    """A page of the audit trail, newest first (``before``: the last id of the page before)."""
    return await store.audit.read(limit=limit, before=before)


async def schedules(store: Store) -> list[dict[str, Any]]:
    """Every schedule with next run, last run, last job id and paused (store.schedules)."""
    return await store.schedules.list()


# --- actions (the REST handlers) ------------------------------------------------------


# Each takes the audit recorder of the UI request (hub/audit.py): a change made in the
# dashboard is in the audit trail like one made through the API.


async def pause_task(store: Store, name: str, audit: Recorder) -> None:
    await task_routes.pause_task(name, store, audit)


async def resume_task(store: Store, name: str, audit: Recorder) -> None:
    await task_routes.resume_task(name, store, audit)


async def set_replicas(
    store: Store, settings: HubSettings, name: str, replicas: int, audit: Recorder
) -> None:
    await task_routes.patch_task(name, TaskPatch(replicas=replicas), store, settings, audit, False)


async def pause_schedule(store: Store, name: str, paused: bool, audit: Recorder) -> None:
    await schedule_routes.patch_schedule(name, SchedulePatch(paused=paused), store, audit)


async def run_schedule(store: Store, name: str, audit: Recorder) -> str:
    """Push one job of the schedule now; returns the job id."""
    return (await schedule_routes.run_schedule(name, store, audit)).job_id


async def stop_node(store: Store, node_id: str, audit: Recorder) -> None:
    await node_routes.stop_node(node_id, store, audit)


async def event(store: Store, text: str) -> None:
    await store.events.add(text)
