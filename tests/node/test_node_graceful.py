"""Graceful stop with real gridq workers draining a real queue: no job is lost.

Docker runtime: the workers run in the locally built gridq-worker:test image (host
network, so they reach the test Redis on 127.0.0.1). Process runtime: `gridq worker`
subprocesses. Either way the agent gets SIGTERM while jobs are in flight.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import wait_for
from tests.support.stack import GRIDQ, Hub

APP = textwrap.dedent(
    """
    import time
    from gridq.worker import App

    app = App()

    @app.default
    def slow(item: bytes):
        time.sleep(0.4)
        return item
    """
)
N_JOBS = 60


def _run(
    hub: Hub,
    make_agent: Any,
    runtime: str,
    command: list[str],
    env: dict[str, str],
    image: str | None,
    tmp_path: Path,
    **agent_settings: Any,
) -> None:
    r = redis.Redis.from_url(hub.redis_url)
    queue, out = f"in-{runtime}", f"out-{runtime}"
    r.delete(queue, out)
    jobs = [f"job-{i}".encode() for i in range(N_JOBS)]
    r.lpush(queue, *jobs)
    agent = make_agent(hub, runtime=runtime, stop_timeout=20, **agent_settings)
    agent.node_id()
    body: dict[str, Any] = dict(
        name=f"drain-{runtime}",
        command=command,
        replicas=2,
        input_queue=queue,
        output_queue=out,
        env=env,
        concurrency=3,
    )
    if image:
        body["image"] = image
    hub.create_task(**body)
    # Stop while the workers are busy: some results in, most jobs still queued.
    wait_for(lambda: r.llen(out) >= 4, timeout=60)
    agent.signal(signal.SIGTERM)
    assert agent.wait(40) == 0, agent.log()
    done_during = r.llen(out)
    assert done_during < N_JOBS, "the stop came too late to prove anything"
    # Whatever was not finished is back in (or still in) the queue: a burst worker on the
    # host finishes it, and every job has exactly one result.
    env_burst = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
    env_burst.update(
        INPUT_REDIS_URL=hub.redis_url,
        INPUT_QUEUE=queue,
        OUTPUT_QUEUE=out,
        OUTPUT_REDIS_URL=hub.redis_url,
        GRIDQ_WORKER_LEASE_SECONDS="2",
    )
    subprocess.run(
        [GRIDQ, "worker", "slowapp:app", "--burst", "--concurrency", "8"],
        cwd=tmp_path,
        env=env_burst,
        check=True,
        timeout=120,
        capture_output=True,
    )
    results = r.lrange(out, 0, -1)
    assert sorted(results) == sorted(jobs), (len(results), done_during)


@pytest.mark.slow
def test_process_runtime_graceful_stop_loses_no_job(
    hub: Hub, make_agent: Any, tmp_path: Path
) -> None:
    (tmp_path / "slowapp.py").write_text(APP)
    _run(
        hub,
        make_agent,
        "process",
        [GRIDQ, "worker", "slowapp:app"],
        {"PYTHONPATH": str(tmp_path)},
        None,
        tmp_path,
    )


@pytest.mark.docker
@pytest.mark.slow
def test_docker_runtime_graceful_stop_loses_no_job(
    hub: Hub, make_agent: Any, worker_image: str, tmp_path: Path
) -> None:
    (tmp_path / "slowapp.py").write_text(APP)
    # The image has gridq but not the user's module: write it at start (the root is
    # writable unless read_only is set).
    script = (
        'mkdir -p /tmp/app && printf "%s" "$APP_SRC" > /tmp/app/slowapp.py '
        "&& cd /tmp/app && exec gridq worker slowapp:app"
    )
    _run(
        hub,
        make_agent,
        "docker",
        ["sh", "-c", script],
        {"APP_SRC": APP},
        worker_image,
        tmp_path,
        docker_network="host",
    )
