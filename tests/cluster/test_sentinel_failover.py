"""Sentinel failover mid-run: a producer enqueues and a worker runs jobs through a
``redis+sentinel://`` URL while the master is SIGKILLed. The sentinels promote the
replica; producer and worker follow it without a restart.

With ``?min_replicas=1`` nothing acknowledged is lost. Without it, whatever the
master acknowledged but had not yet streamed to its replica is gone: the test counts
that loss and prints it (docs/scaling.md quotes it)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gridq.ports import free_port
from gridq.worker import App
from gridq.worker.worker import Worker
from tests.cluster.flow import Producer, drain
from tests.cluster.sentinels import SentinelGroup
from tests.conftest import need
from tests.hub.hub_helpers import ADMIN, ADMIN_H, task_body
from tests.support import wait_for
from tests.worker.conftest import Running, settings

JOBS = 4000
BATCH = 20


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    server = shutil.which("redis-server")
    if not server:
        need("redis-server (apt-get install redis-server) to run a Sentinel group")
    assert server
    g = SentinelGroup(server, tmp_path)
    try:
        g.start()
        yield g
    finally:
        g.stop()


def _failover_run(g: SentinelGroup, min_replicas: int) -> tuple[set[int], list[int], Worker, int]:
    url = g.url + (f"?min_replicas={min_replicas}" if min_replicas else "")
    app = App(input_url=url, input_queue="fq", output_url=url, output_queue="fo")

    @app.task
    def echo(i: int) -> int:
        return i

    worker = Worker(app, settings(worker_concurrency=8), install_signals=False)
    run = Running(worker)
    prod = Producer(url, "fq", JOBS, BATCH)
    pt = prod.start_until_a_third()
    try:
        at_kill = len(prod.acked)
        old = g.kill_master()
        new_port = g.wait_failover(old.port)
        # With WAIT 1 nothing is acknowledged until a replica is back: the old master
        # returns as a replica of the new one.
        g.rejoin(old, new_port)
        pt.join(120)
        assert not pt.is_alive(), "the producer is stuck"
        got = drain(url, "fq", "fo")
    finally:
        run.stop(30)
    return set(prod.acked), got, worker, at_kill


def test_failover_with_wait_loses_nothing(sentinels: SentinelGroup) -> None:
    acked, got, worker, _ = _failover_run(sentinels, min_replicas=1)
    assert len(acked) == JOBS
    lost = acked - set(got)
    assert not lost, f"{len(lost)} acknowledged job(s) lost despite WAIT: {sorted(lost)[:20]}"
    # The same worker object ran before and after: it followed the failover.
    assert worker._fatal is None
    print(f"\nsentinel failover, WAIT 1: lost 0 of {JOBS}, duplicates {len(got) - len(set(got))}")


def test_failover_without_wait_counts_the_loss(sentinels: SentinelGroup) -> None:
    acked, got, worker, at_kill = _failover_run(sentinels, min_replicas=0)
    assert len(acked) == JOBS
    assert worker._fatal is None
    lost = acked - set(got)
    # Producer and worker followed the failover: jobs acknowledged well after the kill
    # ran. Without WAIT nothing more is promised: an acknowledged write can be lost to
    # replication lag, or to a second failover on a loaded machine (seen once in CI: the
    # last 200 jobs), which is what this test counts and docs/scaling.md reports.
    assert [i for i in got if i >= at_kill + BATCH], "nothing enqueued after the failover ran"
    print(
        f"\nsentinel failover, no WAIT: lost {len(lost)} of {JOBS} acknowledged jobs "
        f"({sorted(lost)[:10]}...), duplicates {len(got) - len(set(got))}"
    )


def test_hub_follows_the_failover(sentinels: SentinelGroup, tmp_path: Path) -> None:
    """A real hub process on the sentinel URL serves reads and writes again once the
    replica is promoted, without a restart."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        GRIDQ_HUB_REDIS_URL=sentinels.url,
        GRIDQ_HUB_TOKEN=ADMIN,
        GRIDQ_NODE_TOKEN="nod-" + secrets.token_hex(16),
        GRIDQ_HUB_LOG_LEVEL="warning",
        GRIDQ_HUB_SCHEDULE_INTERVAL="0.3",
    )
    log = tmp_path / "hub.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "gridq"), "hub", "--bind", f"127.0.0.1:{port}"],
            env=env,
            stdout=out,
            stderr=out,
        )
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=ADMIN_H, timeout=10)

    def answers(path: str) -> bool:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            return http.get(path).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(lambda: answers("/api/tasks"), timeout=30)
        r = http.post("/api/tasks", json=task_body(sentinels.url, name="before"))
        assert r.status_code == 201, r.text
        old = sentinels.kill_master()
        sentinels.wait_failover(old.port)

        def created() -> bool:
            try:
                r = http.post("/api/tasks", json=task_body(sentinels.url, name="after"))
            except httpx.HTTPError:
                return False
            # 409: an earlier try was written but its answer was cut by the failover.
            return r.status_code in (201, 409)

        try:
            wait_for(created, timeout=60)
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None
        names = {t["name"] for t in http.get("/api/tasks").json()}
        assert {"before", "after"} <= names
        assert proc.poll() is None  # the same hub process throughout
    finally:
        http.close()
        proc.terminate()
        proc.wait(10)
