"""gridq on a real Redis Cluster: three queues on three different masters, every job's
result comes back, and every key of a queue is in the queue's slot."""

from __future__ import annotations

import json
import time
from itertools import count

from redis.cluster import RedisCluster

from gridq import keys, protocol
from gridq.queue import Queue
from gridq.redisurl import client, key_slot
from gridq.worker import App
from tests.cluster.conftest import Cluster
from tests.worker.conftest import Running, settings

JOBS = 10_000


def _master_of(rc: RedisCluster, name: str) -> str:
    node = rc.get_node_from_key(name)
    assert node is not None
    return str(node.name)


def _queues_on_three_masters(rc: RedisCluster) -> list[str]:
    """Queue names (by key slot) whose slots belong to three different masters."""
    picked: dict[str, str] = {}
    for i in count():
        name = f"cq{i}"
        picked.setdefault(_master_of(rc, name), name)
        if len(picked) == 3:
            return sorted(picked.values())
    raise AssertionError("unreachable")


def _same_slot_name(name: str) -> str:
    """Another brace-free name in ``name``'s slot: its result goes inside the settle script."""
    for i in count():
        cand = f"{name}-out{i}"
        if key_slot(cand) == key_slot(name):
            return cand
    raise AssertionError("unreachable")


def test_three_queues_on_three_masters_all_results_return(redis_cluster: Cluster) -> None:
    rc = redis_cluster.client()
    url = redis_cluster.url
    queues = _queues_on_three_masters(rc)
    assert len({_master_of(rc, q) for q in queues}) == 3
    # First queue: output in the same slot (one script); the others: another slot, on
    # another master (written in its own step before the ack).
    outputs = [_same_slot_name(queues[0]), f"{queues[1]}-out", f"{queues[2]}-out"]
    assert key_slot(outputs[0]) == key_slot(queues[0])
    assert key_slot(outputs[1]) != key_slot(queues[1])

    per = [JOBS // 3 + (1 if i < JOBS % 3 else 0) for i in range(3)]
    for q, n in zip(queues, per, strict=True):
        producer = Queue.from_url(url, q)
        items = [protocol.encode("inc", [i], {}, job_id=f"{q}-{i}") for i in range(n)]
        for start in range(0, n, 1000):
            producer.push_items(items[start : start + 1000])
        # A few with a priority, so the p<level> lists are used too.
        producer.enqueue("inc", -1, _priority=5, _job_id=f"{q}-prio")

    runs: list[Running] = []
    for q, out in zip(queues, outputs, strict=True):
        app = App(input_url=url, input_queue=q, output_url=url, output_queue=out)

        @app.task
        def inc(x: int) -> int:
            return x + 1

        from gridq.worker.worker import Worker

        runs.append(Running(Worker(app, settings(), install_signals=False)))

    try:
        deadline = time.monotonic() + 120
        want = [n + 1 for n in per]
        while time.monotonic() < deadline:
            if [rc.llen(o) for o in outputs] == want:
                break
            time.sleep(0.2)
    finally:
        for r in runs:
            r.stop(30)

    for q, out, n in zip(queues, outputs, per, strict=True):
        got = [json.loads(x) for x in rc.lrange(out, 0, -1)]
        ids = sorted(g["id"] for g in got)
        assert ids == sorted([f"{q}-{i}" for i in range(n)] + [f"{q}-prio"])
        assert all(
            g["result"] == int(g["id"].rsplit("-", 1)[1]) + 1 for g in got if "prio" not in g["id"]
        )
        k = keys.QueueKeys(q)
        assert int(rc.hget(k.stats, "processed") or 0) == n + 1
        assert rc.llen(k.dead) == 0 and rc.llen(q) == 0
        # Every gridq key of the queue lives on the queue's master, in its slot.
        node = rc.get_node_from_key(q)
        found = [x.decode() for x in rc.scan_iter(match=f"gridq:q:{{{q}}}:*", target_nodes=node)]
        assert found and all(key_slot(x) == key_slot(q) for x in found)


def test_cluster_url_gives_a_cluster_client(redis_cluster: Cluster) -> None:
    c = client(redis_cluster.url.replace("redis+cluster://", "redis+cluster://:pw@"), timeout=2)
    assert isinstance(c, RedisCluster)
    c.close()
    c = client(redis_cluster.url, timeout=2)
    assert c.ping()
    c.close()
