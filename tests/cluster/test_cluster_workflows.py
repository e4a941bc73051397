"""Workflows on a real Redis Cluster: members, barriers and final records in three
queues on three different masters (docs/workflows.md: no script crosses a slot)."""

from __future__ import annotations

from typing import Any

from gridq import Failure, chain, chord, group
from gridq.jobs import JobFailed
from gridq.redisurl import key_slot
from gridq.worker import App
from tests.cluster.conftest import Cluster
from tests.cluster.test_cluster_jobs import _master_of, _queues_on_three_masters
from tests.worker.conftest import Running, settings


def test_chain_group_chord_across_three_masters(redis_cluster: Cluster) -> None:
    import pytest

    from gridq.worker.worker import Worker

    rc = redis_cluster.client()
    url = redis_cluster.url
    qa, qb, qc = _queues_on_three_masters(rc)
    assert len({_master_of(rc, q) for q in (qa, qb, qc)}) == 3
    assert len({key_slot(q) for q in (qa, qb, qc)}) == 3
    a, b, c = (App(input_url=url, input_queue=q) for q in (qa, qb, qc))

    @a.task(retries=0)
    def add(x: int, y: int) -> int:
        if y < 0:
            raise ValueError("negative")
        return x + y

    @b.task
    def mul(x: int, y: int) -> int:
        return x * y

    @c.task
    def neg(x: int) -> int:
        return -x

    @c.task
    def summarize(results: list[Any]) -> list[Any]:
        return [r.error_type if isinstance(r, Failure) else r for r in results]

    runs = [Running(Worker(app, settings(), install_signals=False)) for app in (a, b, c)]
    try:
        assert chain(add.s(1, 2), mul.s(10), neg.s()).delay().get(timeout=60) == -30
        members = [add.s(i, 1) for i in range(5)] + [mul.s(i, 2) for i in range(5)]
        assert group(members).delay().get(timeout=60) == [1, 2, 3, 4, 5, 0, 2, 4, 6, 8]
        h = chord([add.s(1, -1), mul.s(3, 3), add.s(2, 2)], summarize.s()).delay()
        assert h.queue == qc
        assert h.get(timeout=60) == ["ValueError", 9, 4]
        with pytest.raises(JobFailed):
            chain(add.s(1, -5), mul.s(2)).delay().get(timeout=60)
    finally:
        for r in runs:
            r.stop(30)
