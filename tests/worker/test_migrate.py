"""`gridq migrate`: keys written in the 0.1.0 layout (spelled out literally here) end up
under layout 2, and a 0.2.0 worker then runs every job, in-flight ones included."""

from __future__ import annotations

import json
import time

import redis
from click.testing import CliRunner

from gridq import keys
from gridq.cli.main import cli
from gridq.queue import Queue


def _job(i: int, priority: int | None = None) -> bytes:
    body: dict[str, object] = {"gridq": 1, "id": f"j{i}", "task": "add", "args": [i, 1]}
    if priority:
        body["priority"] = priority
    return json.dumps(body).encode()


def write_010(r: redis.Redis) -> None:
    """What a 0.1.0 grid leaves behind: queue 'nums' mid-run, one dead consumer, hub state."""
    r.lpush("nums", _job(1), _job(2))
    r.lpush("gridq:q:nums:p5", _job(3, 5))
    r.lpush("gridq:q:nums:inflight:c-old", _job(4))
    r.zadd("gridq:q:nums:consumers", {"c-old": time.time() - 100})
    r.set("gridq:consumer:c-old:alive", "1", ex=300)
    r.zadd("gridq:q:nums:delayed", {_job(5): time.time() - 1})
    r.lpush("gridq:q:nums:dead", json.dumps({"reason": "x", "item": "old"}))
    r.hset("gridq:q:nums:stats", mapping={"processed": 40, "dead": 1})
    r.set("gridq:q:nums:last_claim", "1700000000.0")
    r.hset("gridq:q:other:stats", mapping={"processed": 3})
    r.hset("gridq:hub:tasks", "t", "{}")
    r.zadd("gridq:hub:node_seen", {"n1": 1.0})
    r.set("gridq:hub:node:n1:secret", "ab" * 32)
    r.lpush("gridq:hub:task:t:rate", "1:0")


def run(url: str, *args: str) -> str:
    res = CliRunner().invoke(cli, ["migrate", "--redis-url", url, *args])
    assert res.exit_code == 0, res.output
    return res.output


def test_migrate_from_010_layout(redis_conn, redis_url, start_worker):
    write_010(redis_conn)
    before = set(redis_conn.keys())

    out = run(redis_url, "--dry-run")
    assert "would move gridq:q:nums:p5 -> gridq:q:{nums}:p5" in out
    assert set(redis_conn.keys()) == before

    # Only the named queue: the other queue and the hub stay as they are.
    run(redis_url, "nums")
    assert redis_conn.exists("gridq:q:other:stats", "gridq:hub:tasks") == 2
    k = keys.QueueKeys("nums")
    assert redis_conn.llen(k.priority(5)) == 1
    assert redis_conn.llen(k.inflight("c-old")) == 1
    assert redis_conn.zcard(k.consumers) == 1 and redis_conn.zcard(k.delayed) == 1
    assert redis_conn.hgetall(k.stats) == {b"processed": b"40", b"dead": b"1"}
    assert redis_conn.llen(k.dead) == 1 and redis_conn.get(k.last_claim) == b"1700000000.0"
    assert not redis_conn.exists("gridq:consumer:c-old:alive")
    assert not [x for x in redis_conn.keys("gridq:q:nums:*")]

    # Everything else, then once more: nothing left to do.
    run(redis_url)
    assert redis_conn.hget(keys.HUB_TASKS, "t") == b"{}"
    assert redis_conn.zscore(keys.HUB_NODE_SEEN, "n1") == 1.0
    assert redis_conn.get(keys.hub_node_secret("n1")) == b"ab" * 32
    assert redis_conn.llen(keys.hub_task_rate("t")) == 1
    assert redis_conn.hget(keys.QueueKeys("other").stats, "processed") == b"3"
    assert not redis_conn.keys("gridq:hub:*") and not redis_conn.keys("gridq:consumer:*")
    assert "0 keys moved" in run(redis_url)

    # A 0.2.0 worker runs all five jobs: queued, prioritised, reaped from the dead
    # consumer's in-flight list, and the due delayed one.
    from gridq.worker import App

    app = App(input_url=redis_url, input_queue="nums", output_url=redis_url, output_queue="out")

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    w = start_worker(app, worker_lease_seconds=1.0)
    deadline = time.monotonic() + 20
    while redis_conn.llen("out") < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    w.stop()
    got = sorted(json.loads(x)["result"] for x in redis_conn.lrange("out", 0, -1))
    assert got == [2, 3, 4, 5, 6]
    assert Queue.from_url(redis_url, "nums").stats()["processed"] == 45


def test_migrate_merges_into_keys_a_new_part_already_wrote(redis_conn, redis_url):
    redis_conn.hset("gridq:q:m:stats", mapping={"processed": 5})
    redis_conn.hset(keys.QueueKeys("m").stats, mapping={"processed": 2})
    redis_conn.lpush("gridq:q:m:p1", b"old")
    redis_conn.lpush(keys.QueueKeys("m").priority(1), b"new")
    run(redis_url, "m")
    assert redis_conn.hget(keys.QueueKeys("m").stats, "processed") == b"7"
    # The old item sits at the right end: the end workers take first.
    assert redis_conn.lrange(keys.QueueKeys("m").priority(1), 0, -1) == [b"new", b"old"]


def test_migrate_refuses_a_braced_queue_name(redis_conn, redis_url):
    res = CliRunner().invoke(cli, ["migrate", "--redis-url", redis_url, "a{b}"])
    assert res.exit_code != 0 and "contains '{' or '}'" in res.output
