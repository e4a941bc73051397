"""A Celery task registered at the hub runs on a node, instrumented: the process runtime,
and the docker runtime with the locally built gridq-celery:test image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_for
from tests.support.stack import Hub

CELERY_PROJ = Path(__file__).resolve().parents[1] / "celery"


def _send_and_check(hub: Hub, task: str, queue: str) -> None:
    """Tasks sent with Celery's own send_task complete, and the hub's live figures count them."""
    from celery import Celery

    client = Celery("producer", broker=hub.redis_url, backend=hub.redis_url)
    try:
        results = [
            client.send_task("gridq_celery_proj.add", (i, i), queue=queue) for i in range(20)
        ]
        assert [r.get(timeout=60) for r in results] == [2 * i for i in range(20)]
        # A handler that starts a multiprocessing.Pool works under the default (threads) pool.
        pool_sum = client.send_task("gridq_celery_proj.pool_sum", (10,), queue=queue)
        assert pool_sum.get(timeout=60) == 285
    finally:
        client.close()

    def counted() -> dict[str, Any] | None:
        live = hub.http.get(f"/api/tasks/{task}").json()["live"]
        return live if live and (live.get("processed") or 0) >= 21 else None

    live = wait_for(counted, timeout=20)
    assert live["processed"] == 21
    assert live["depth"] == 0 and live["error"] is None


def _running(hub: Hub, node_id: str, task: str) -> bool:
    return any(i["state"] == "running" and i["task"] == task for i in hub.instances(node_id))


def test_celery_task_runs_on_a_node(hub: Hub, make_agent: Any) -> None:
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
    wait_for(lambda: _running(hub, node_id, "celery-add"), timeout=40)
    _send_and_check(hub, "celery-add", "cq")


@pytest.mark.docker
@pytest.mark.slow
def test_celery_task_runs_on_a_docker_node(
    hub: Hub, make_agent: Any, docker_client: Any, celery_image: str
) -> None:
    # Host network: the workers reach the test Redis on 127.0.0.1, as in the other
    # docker node tests.
    agent = make_agent(hub, runtime="docker", docker_network="host")
    node_id = agent.node_id()
    task = hub.create_task(
        name="celery-docker",
        kind="celery",
        image=celery_image,
        app="gridq_celery_proj:app",
        queues=["cqd", "cqd-extra"],
        input_queue="cqd",
        replicas=1,
        # The celery worker and the processes pool_sum forks need more than the
        # fixture's 64 MB per container.
        resources={"memory_mb": 512},
        env={"TEST_RESULT_BACKEND": hub.redis_url},
    )
    assert task["kind"] == "celery"
    wait_for(lambda: _running(hub, node_id, "celery-docker"), timeout=60)

    (raw,) = docker_client.api.containers(
        filters={"label": [f"gridq.agent={agent.agent_id}", "gridq.task=celery-docker"]}
    )
    attrs = docker_client.api.inspect_container(raw["Id"])
    env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    assert attrs["Config"]["Image"] == celery_image
    # No command in the spec: the image's CMD runs, and it is gridq's wrapper.
    assert attrs["Config"]["Cmd"] == ["gridq", "celery", "worker"]
    assert env["GRIDQ_CELERY_APP"] == "gridq_celery_proj:app"
    assert env["INPUT_QUEUE"] == "cqd,cqd-extra" and env["INPUT_REDIS_URL"] == hub.redis_url

    def worker_process() -> bool:
        top = docker_client.api.top(raw["Id"], ps_args="-eo pid,args")
        cmds = [p[-1] for p in top.get("Processes") or []]
        return any("gridq celery worker" in c for c in cmds)

    wait_for(worker_process, timeout=20)
    _send_and_check(hub, "celery-docker", "cqd")
