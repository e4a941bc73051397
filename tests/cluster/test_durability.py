"""``min_replicas``: the URL option, WAIT shortfalls seen by the producer, and the
worker's settle retried after a shortfall without writing its results twice. Real
redis-server processes (a master, then a replica of it)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gridq import durability, protocol
from gridq.durability import NotReplicated
from gridq.queue import Queue
from gridq.redisurl import client, min_replicas_of, parse_multi, strip_min_replicas, validate_url
from gridq.worker.broker import Broker, Settlement, make_client
from tests.cluster.sentinels import SentinelGroup
from tests.conftest import RedisServer


def test_min_replicas_url_option() -> None:
    assert min_replicas_of("redis://h:1/0?min_replicas=2") == 2
    assert min_replicas_of("redis://h:1/0") is None
    assert strip_min_replicas("redis://h:1/0?min_replicas=2") == "redis://h:1/0"
    assert (
        strip_min_replicas("redis://h:1/0?socket_timeout=3&min_replicas=1")
        == "redis://h:1/0?socket_timeout=3"
    )
    m = parse_multi("redis+sentinel://a:1,b:2/mym/0?min_replicas=1")
    assert m is not None and m.master == "mym" and m.db == 0
    with pytest.raises(ValueError, match="min_replicas"):
        parse_multi("redis+cluster://a:1,b:2?foo=1")
    with pytest.raises(ValueError, match="whole number"):
        validate_url("redis://h:1/0?min_replicas=many")


def test_env_gives_the_default_and_the_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(durability.ENV_MIN_REPLICAS, "2")
    assert durability.min_replicas("redis://h:1/0") == 2
    assert durability.min_replicas("redis://h:1/0?min_replicas=0") == 0
    monkeypatch.setenv(durability.ENV_MIN_REPLICAS, "two")
    with pytest.raises(ValueError, match="GRIDQ_REDIS_MIN_REPLICAS"):
        durability.min_replicas("redis://h:1/0")


def test_shortfall_then_settle_retry_writes_results_once(
    redis_binary: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(durability.ENV_WAIT_MS, "200")
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    master = RedisServer(redis_binary, tmp_path / "m")
    replica = RedisServer(redis_binary, tmp_path / "r")
    master.start()
    try:
        url = master.url + "?min_replicas=1"
        assert client(url).ping()  # the option is gridq's: redis-py never sees it
        # No replica: the enqueue happens on the master, and the producer is told.
        q = Queue.from_url(url, "dq")
        items = [protocol.encode("t", [i], {}, job_id=f"d{i}") for i in range(5)]
        with pytest.raises(NotReplicated, match="0 of 1"):
            q.push_items(items)
        assert q.stats()["depth"] == 5

        conn = make_client(url)
        b = Broker(conn, "dq", "c1", output_queue="dout", min_replicas=1)
        got = b.claim(5) or []
        assert len(got) == 5
        s = Settlement(acks=list(got), results=[b"r%d" % i for i in range(5)])
        with pytest.raises(NotReplicated):
            b.settle(s)
        raw = master.client()
        assert raw.llen("dout") == 5 and raw.llen(b.inflight) == 0  # done, not yet safe
        # A replica comes; the worker's retry redoes only the WAIT: no second results.
        replica.start("--replicaof", "127.0.0.1", str(master.port))
        SentinelGroup.wait_replicas(master.port, 1)
        deadline = time.monotonic() + 30
        while True:
            try:
                assert b.settle(s, retry=True) == 0
                break
            except NotReplicated:
                assert time.monotonic() < deadline
        assert raw.llen("dout") == 5
        assert int(raw.hget(b.k.stats, "processed") or 0) == 5
        # With the replica up, an enqueue is acknowledged.
        assert q.push_items([b"x"]) == 1
    finally:
        replica.stop()
        master.stop()
