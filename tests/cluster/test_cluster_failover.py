"""SIGKILL the master of a queue's slot mid-run on a real 6-process Redis Cluster: its
replica takes over, the producer and the worker carry on without a restart, and
with WAIT on (``?min_replicas=1``) nothing acknowledged is lost."""

from __future__ import annotations

import time
from itertools import count

import redis

from gridq.redisurl import key_slot
from gridq.worker import App
from gridq.worker.worker import Worker
from tests.cluster.conftest import Cluster
from tests.cluster.flow import Producer, drain
from tests.worker.conftest import Running, settings

JOBS = 3000


def _master_port(c: Cluster, key: str) -> int | None:
    """The port of the master serving ``key``'s slot, as a live node reports it."""
    slot = key_slot(key)
    for port, proc in c.procs.items():
        if proc.poll() is not None:
            continue
        try:
            for start, end, master, *_ in redis.Redis(port=port).execute_command(
                "CLUSTER", "SLOTS"
            ):
                if int(start) <= slot <= int(end):
                    return int(master[1])
        except redis.RedisError:
            continue
    return None


def test_killing_a_master_loses_nothing_with_wait(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    queue = "kq"
    output = next(f"kq-out{i}" for i in count() if key_slot(f"kq-out{i}") == key_slot(queue))
    url = c.url + "?min_replicas=1"
    app = App(input_url=url, input_queue=queue, output_url=url, output_queue=output)

    @app.task
    def echo(i: int) -> int:
        return i

    worker = Worker(app, settings(worker_concurrency=8), install_signals=False)
    run = Running(worker)
    prod = Producer(url, queue, JOBS)
    pt = prod.start_until_a_third()
    try:
        old = _master_port(c, queue)
        assert old is not None
        c.kill(old)
        deadline = time.monotonic() + 60
        while (new := _master_port(c, queue)) in (old, None):
            assert time.monotonic() < deadline, "no replica took over the slot"
            time.sleep(0.2)
        # WAIT 1 needs a replica again: the killed node rejoins as one.
        c.restart(old)
        pt.join(120)
        assert not pt.is_alive(), "the producer is stuck"
        got = drain(url, queue, output)
    finally:
        run.stop(30)
    assert new != old
    assert len(prod.acked) == JOBS
    lost = set(prod.acked) - set(got)
    assert not lost, f"{len(lost)} acknowledged job(s) lost: {sorted(lost)[:20]}"
    assert worker._fatal is None  # the same worker ran on: no restart
    print(
        f"\ncluster master killed: lost 0 of {JOBS}, producer retries {prod.errors}, "
        f"duplicates {len(got) - len(set(got))}"
    )
