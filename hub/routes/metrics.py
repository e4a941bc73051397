"""GET /metrics: Prometheus text format, computed from Redis at scrape time.

Figures are read from the shared state (not kept in this process), so every hub
replica reports the same grid; only request latency is per process.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..deps import ApiDep, StoreDep
from ..schedule_metrics import schedule_families
from ..store import counts
from ..views import running_by_task

router = APIRouter(tags=["observability"], dependencies=[ApiDep])

NODE_STATUSES = ("online", "offline", "draining", "stopping", "left")


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request, store: StoreDep) -> Response:
    nodes = await store.nodes.all()
    tasks = await store.tasks.all()
    summary = await store.scheduling.summary()
    stats = await store.figures.stats_many(t.spec for t in tasks)

    by_status = {s: 0 for s in NODE_STATUSES}
    for n in nodes:
        by_status[n.status] = by_status.get(n.status, 0) + 1
    by_node = running_by_task({n.node_id: n.record for n in nodes if counts(n.status)})
    running = {task: sum(per_node.values()) for task, per_node in by_node.items()}

    g_nodes = GaugeMetricFamily("gridq_hub_nodes", "Nodes by status", labels=["status"])
    for s, c in sorted(by_status.items()):
        g_nodes.add_metric([s], c)
    g_inst = GaugeMetricFamily(
        "gridq_task_instances",
        "Worker instances per task, desired vs running",
        labels=["task", "state"],
    )
    g_depth = GaugeMetricFamily(
        "gridq_queue_depth", "Jobs waiting in the input queue", labels=["task"]
    )
    g_age = GaugeMetricFamily(
        "gridq_queue_oldest_age_seconds", "Age of the oldest waiting job", labels=["task"]
    )
    g_flight = GaugeMetricFamily(
        "gridq_queue_in_flight", "Jobs claimed, not yet acknowledged", labels=["task"]
    )
    g_dead = GaugeMetricFamily("gridq_task_dead", "Jobs in the dead-letter queue", labels=["task"])
    c_proc = CounterMetricFamily(
        "gridq_task_processed", "Jobs processed (engine counter)", labels=["task"]
    )
    c_fail = CounterMetricFamily(
        "gridq_task_failed", "Job attempts failed (engine counter)", labels=["task"]
    )
    g_up = GaugeMetricFamily(
        "gridq_task_queue_up", "1 when the hub could read the task's queue figures", labels=["task"]
    )
    for t in tasks:
        name = t.spec.name
        g_inst.add_metric([name, "desired"], summary.get(name, {}).get("desired", 0))
        g_inst.add_metric([name, "running"], running.get(name, 0))
        st = stats.get(name, {})
        ok = "error" not in st
        g_up.add_metric([name], 1 if ok else 0)
        if not ok:
            continue
        g_depth.add_metric([name], st.get("depth") or 0)
        g_flight.add_metric([name], st.get("in_flight") or 0)
        g_age.add_metric([name], st.get("oldest_age") or 0)
        g_dead.add_metric([name], st.get("dead") or 0)
        c_proc.add_metric([name], st.get("processed") or 0)
        c_fail.add_metric([name], st.get("failed") or 0)

    reg = CollectorRegistry()
    reg.register(
        _Snapshot(
            [g_nodes, g_inst, g_depth, g_flight, g_age, g_dead, c_proc, c_fail, g_up]
            + schedule_families(await store.schedules.list(), request.app.state.leader.leading)
        )
    )
    body = generate_latest(reg) + generate_latest(request.app.state.registry)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
