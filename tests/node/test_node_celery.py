"""A Celery task registered at the hub runs on a node (process runtime), instrumented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node_helpers import wait_for

CELERY_PROJ = Path(__file__).resolve().parents[1] / "celery"


def test_celery_task_runs_on_a_node(hub: Any, make_agent: Any) -> None:
    from celery import Celery

    agent = make_agent(hub, runtime="process")
    node_id = agent.node_id()
    task = hub.create_task(
        name="celery-add",
        kind="celery",
        app="gridq_celery_proj:app",
        queues=["cq"],
        input_queue="cq",
        replicas=1,
        env={"PYTHONPATH": str(CELERY_PROJ), "TEST_RESULT_BACKEND": hub.redis_url},
    )
    assert task["kind"] == "celery"

    def running() -> bool:
        return any(i["state"] == "running" and i["task"] == "celery-add" for i in hub.instances(node_id))

    wait_for(running, timeout=40)
    client = Celery("producer", broker=hub.redis_url, backend=hub.redis_url)
    try:
        results = [client.send_task("gridq_celery_proj.add", (i, i), queue="cq") for i in range(20)]
        assert [r.get(timeout=60) for r in results] == [2 * i for i in range(20)]
        # A handler that starts a multiprocessing.Pool works under the default (threads) pool.
        assert client.send_task("gridq_celery_proj.pool_sum", (10,), queue="cq").get(timeout=60) == 285
    finally:
        client.close()

    def counted() -> dict[str, Any] | None:
        live = hub.http.get("/api/tasks/celery-add").json()["live"]
        return live if live and (live.get("processed") or 0) >= 21 else None

    live = wait_for(counted, timeout=20)
    assert live["depth"] == 0 and live["error"] is None
