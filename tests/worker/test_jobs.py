"""Job records and handles (issue #14): get(), status(), info(), cancel(), unique keys.

Real redis-server; workers in-process (a thread) or as real `gridq worker` processes.
"""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

import gridq
from gridq.queue import Queue
from gridq.worker import App
from gridq.worker.broker import Broker, RecordUpdate, Settlement, _runs
from tests.support import wait_for
from tests.worker.conftest import ROOT

Q = "jq"


def make_app(url: str) -> App:
    return App(input_url=url, input_queue=Q, output_url=url, output_queue="jq-out")


def test_handle_statuses_info_and_result(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)

    @app.task
    def add(x: int, y: int) -> dict[str, int]:
        return {"sum": x + y}

    h = add.delay(2, 3)
    assert isinstance(h, gridq.JobHandle) and str(h) == h.id and h.queue == Q
    assert h.status() == "queued" and h == h.id
    later = add.enqueue((1, 1), delay=60)
    assert later.status() == "scheduled"
    at = add.enqueue((1, 2), eta=datetime.now(UTC) + timedelta(hours=1))
    assert at.status() == "scheduled"
    with pytest.raises(ValueError, match="aware"):
        add.enqueue((1, 2), eta=datetime.now())
    with pytest.raises(TimeoutError):
        h.get(timeout=0.2)
    start_worker(app, worker_pool="threads")
    assert h.get(timeout=20) == {"sum": 5}
    info = h.info()
    assert info["status"] == "succeeded" and info["attempts"] == 1
    assert info["consumer"] and info["result"] == {"sum": 5}
    assert info["enqueued_at"] <= info["started_at"] <= info["finished_at"]
    # The output queue still gets its result object, as before.
    wait_for(lambda: redis_conn.llen("jq-out") == 1)
    assert Queue(redis_conn, Q).job("nope").status() == "unknown"
    with pytest.raises(gridq.JobUnknown):
        Queue(redis_conn, Q).job("nope").get(timeout=1)


def test_get_from_another_process_and_pickle(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)

    @app.task
    def mul(x: int, y: int) -> int:
        time.sleep(0.3)
        return x * y

    h = mul.delay(6, 7)
    again = pickle.loads(pickle.dumps(h))
    assert again == h and again.status() == "queued"
    code = (
        "import sys; from gridq.queue import Queue; "
        f"print(Queue.from_url(sys.argv[1], {Q!r}).job(sys.argv[2]).get(timeout=30))"
    )
    waiter = subprocess.Popen(
        [sys.executable, "-c", code, redis_url, h.id],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    start_worker(app)
    out, _ = waiter.communicate(timeout=40)
    assert waiter.returncode == 0 and out.strip() == "42"
    assert h.get(timeout=5) == 42  # a second waiter sees the same result


def test_dead_job_error_through_get(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)

    @app.task(retries=1, backoff=0.05)
    def boom(x: int) -> None:
        raise ValueError(f"bad {x}")

    h = boom.delay(7)
    start_worker(app, worker_pool="solo")
    with pytest.raises(gridq.JobFailed) as ei:
        h.get(timeout=20)
    e = ei.value
    assert e.error_type == "ValueError" and e.error == "bad 7" and e.attempts == 2
    assert e.traceback and "ValueError: bad 7" in e.traceback
    assert h.status() == "dead"


def test_records_stay_compact_and_only_waited_jobs_get_a_done_list(
    redis_conn, redis_url, start_worker
):
    """What the settle writes (docs/protocol.md "Job records"): short values, so the
    record stays a listpack; a None return keeps no result field; the done list and
    the waiting entry exist only for a job a get() waited for; a later successful try
    leaves no error fields of the failed one behind."""
    app = make_app(redis_url)
    k = Queue(redis_conn, Q).keys
    tries: list[int] = []

    @app.task
    def noop() -> None:
        return None

    @app.task(retries=1, backoff=0.05)
    def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ValueError("first try fails")
        return "ok"

    quiet = noop.delay()
    waited = noop.delay()
    second = flaky.delay()
    start_worker(app, worker_pool="threads")
    assert waited.get(timeout=20) is None
    assert second.get(timeout=20) == "ok"
    wait_for(lambda: quiet.status() == "succeeded")
    rec = redis_conn.hgetall(k.job(quiet.id))
    # The compact encoding: "listpack" since Redis 7, "ziplist" on 6.2.
    assert redis_conn.object("encoding", k.job(quiet.id)) in (b"listpack", b"ziplist")
    assert b"result" not in rec and rec[b"attempts"] == b"1" and rec[b"consumer"]
    assert not redis_conn.exists(k.done(quiet.id))  # nobody waited: nothing pushed
    assert quiet.info()["result"] is None and quiet.get(timeout=1) is None
    # get() on a finished job leaves a short-lived bare status for its own BLMOVE.
    assert redis_conn.lrange(k.done(quiet.id), 0, -1) == [b"succeeded"]
    assert 0 < redis_conn.ttl(k.done(quiet.id)) <= 10
    assert redis_conn.lrange(k.done(waited.id), 0, -1)[0].startswith(b"succeeded\n1\n")
    assert redis_conn.zscore(k.waiting, waited.id) is None  # the settle took it out
    info = second.info()
    assert info["attempts"] == 2 and info["error_type"] is None and info["error"] is None
    # A registration whose waiter went away lapses: the next get() drops it.
    redis_conn.zadd(k.waiting, {"gone": time.time() - 1})
    assert waited.get(timeout=1) is None
    assert redis_conn.zscore(k.waiting, "gone") is None


def test_settle_runs_mix_results_and_none_in_one_batch(redis_conn):
    """The settle script's runs (worker/broker.py SETTLE): neighbours with and without
    a result, and with another status, travel in separate runs within one batch, and
    each record gets its own values (the id read off its key)."""
    q = Queue(redis_conn, Q)
    handles = [q.enqueue("t") for _ in range(5)]
    b = Broker(redis_conn, Q, "c-1", node="n-1")
    items = b.claim(10)
    assert items is not None and len(items) == 5
    now = time.time()
    plan = [("succeeded", "[1]"), ("succeeded", ""), ("succeeded", ""), ("dead", ""),
            ("succeeded", '{"a":2}')]  # fmt: skip
    s = Settlement()
    for item, h, (status, result) in zip(items, handles, plan, strict=True):
        s.acks.append(item)
        err = '["ValueError","bad","tb"]' if status == "dead" else ""
        s.records.append(
            RecordUpdate(h.id, status, 60, None, 0.0, 1, repr(now - 1), repr(now), result, err)
        )
    assert len(_runs(s.records)) == 4
    assert b.settle(s) == 0
    got = [h.info() for h in handles]
    assert [g["status"] for g in got] == [p[0] for p in plan]
    assert [g["result"] for g in got] == [[1], None, None, None, {"a": 2}]
    assert got[3]["error_type"] == "ValueError" and got[3]["error"] == "bad"
    assert all(g["consumer"] == "c-1" and g["node"] == "n-1" for g in got)
    assert all(0 < redis_conn.ttl(q.keys.job(h.id)) <= 60 for h in handles)
    assert not redis_conn.hlen(q.keys.running)


def test_get_before_the_job_exists_leaves_nothing_that_spins(redis_conn):
    """get() on an id that has no record yet raises JobUnknown and leaves a bare status
    for its own BLMOVE; once a job with that id exists, a get() must block again, not
    wake on that stale item over and over (counted in commands, not timed)."""
    q = Queue(redis_conn, Q)
    with pytest.raises(gridq.JobUnknown):
        q.job("early-1").get(timeout=1)
    assert redis_conn.lrange(q.keys.done("early-1"), 0, -1) == [b"unknown"]
    h = q.enqueue("t", _job_id="early-1")
    redis_conn.config_resetstat()
    with pytest.raises(TimeoutError):
        h.get(timeout=0.5)
    calls = redis_conn.info("commandstats").get("cmdstat_blmove", {}).get("calls", 0)
    assert 1 <= calls <= 2, calls
    assert not redis_conn.exists(q.keys.done("early-1"))


def test_result_ttl_expiry_turns_unknown_and_zero_keeps_nothing(
    redis_conn, redis_url, start_worker
):
    app = make_app(redis_url)

    @app.task(result_ttl=1)
    def quick() -> int:
        return 1

    h = quick.delay()
    none = quick.enqueue(result_ttl=0)
    start_worker(app)
    assert h.get(timeout=20) == 1
    wait_for(lambda: h.status() == "unknown", 10, 0.2)
    assert none.status() == "unknown"
    wait_for(lambda: redis_conn.llen("jq-out") == 2)  # it ran all the same


def test_raw_items_keep_no_record(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)
    seen: list[bytes] = []

    @app.default
    def echo(item: bytes) -> bytes:
        seen.append(item)
        return item

    Queue(redis_conn, Q).push_raw(b"plain")
    w = start_worker(app, burst=True)
    assert w.join() == 0 and seen == [b"plain"]
    assert not [k for k in redis_conn.keys("gridq:q:{jq}:job:*")]


def test_cancel_before_start(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)

    @app.task
    def mark(tag: str) -> str:
        redis_conn.rpush("ran", tag)
        return tag

    a = mark.delay("a")
    b = mark.enqueue(("b",), delay=0.3)  # scheduled, then due
    c = mark.delay("c")
    assert a.cancel() and b.cancel()
    assert a.status() == b.status() == "cancelled"
    assert not a.cancel()  # already cancelled
    with pytest.raises(gridq.JobCancelled):
        a.get(timeout=1)
    time.sleep(0.4)  # b is due: the promoter moves it back to the list, the claim drops it
    w = start_worker(app)
    assert c.get(timeout=20) == "c"
    wait_for(lambda: Queue(redis_conn, Q).stats()["delayed"] == 0)
    wait_for(lambda: redis_conn.hget("gridq:q:{jq}:stats", "cancelled") == b"2")
    w.stop()
    assert redis_conn.lrange("ran", 0, -1) == [b"c"]
    assert not redis_conn.smembers("gridq:q:{jq}:cancelled")
    assert not c.cancel()  # finished
    text = metrics_text(w.worker)
    assert 'outcome="cancelled"' in text


def metrics_text(worker: Any) -> str:
    from prometheus_client import generate_latest

    return generate_latest(worker.metrics.registry).decode()


SLOW = """
import asyncio, os, time
import redis
from gridq.worker import App
from gridq.worker.broker import Broker, RecordUpdate, Settlement, _runs

app = App()
marks = redis.Redis.from_url(os.environ["INPUT_REDIS_URL"])

@app.task
def slow(tag):
    marks.rpush("started", tag)
    for _ in range(600):
        time.sleep(0.05)
    marks.rpush("finished", tag)
    return tag

@app.task
def aslow(tag):
    return slow(tag)

@app.task
def fast(tag):
    return tag
"""


def _cancel_running(r: redis.Redis, q: Queue) -> None:
    h = q.enqueue("slow", "x")
    wait_for(lambda: r.lrange("started", 0, -1) == [b"x"], 30)
    wait_for(lambda: h.status() == "running", 5)
    assert h.cancel() is True
    assert h.status() == "cancelled"
    with pytest.raises(gridq.JobCancelled):
        h.get(timeout=5)
    # The worker carries it out: acknowledged, nothing left in flight or marked running.
    wait_for(lambda: q.stats()["in_flight"] == 0, 15)
    wait_for(lambda: not r.hlen(q.keys.running) and not r.smembers(q.keys.kill), 5)
    # ... and it still serves: the next job runs (on a replaced thread / child).
    assert q.enqueue("fast", "y").get(timeout=30) == "y"
    assert r.lrange("finished", 0, -1) == []
    assert q.job(h.id).info()["status"] == "cancelled"


@pytest.mark.parametrize("pool", ["threads", "solo", "asyncio"])
def test_cancel_while_running_in_process(pool, redis_conn, redis_url, start_worker):
    app = make_app(redis_url)

    @app.task
    def slow(tag: str) -> str:
        redis_conn.rpush("started", tag)
        for _ in range(600):
            time.sleep(0.05)
        redis_conn.rpush("finished", tag)
        return tag

    @app.task
    def fast(tag: str) -> str:
        return tag

    w = start_worker(app, worker_pool=pool, worker_concurrency=1 if pool != "solo" else None)
    _cancel_running(redis_conn, Queue(redis_conn, Q))
    assert 'outcome="cancelled"' in metrics_text(w.worker)


def test_cancel_while_running_async_handler(redis_conn, redis_url, start_worker):
    import asyncio

    app = make_app(redis_url)

    @app.task
    async def slow(tag: str) -> str:
        redis_conn.rpush("started", tag)
        await asyncio.sleep(30)
        redis_conn.rpush("finished", tag)
        return tag

    @app.task
    async def fast(tag: str) -> str:
        return tag

    start_worker(app, worker_pool="asyncio")
    _cancel_running(redis_conn, Queue(redis_conn, Q))


def test_cancel_while_running_processes_pool(redis_conn, redis_url, spawn_worker):
    env = {"INPUT_REDIS_URL": redis_url, "INPUT_QUEUE": Q, "GRIDQ_WORKER_LEASE_SECONDS": "2"}
    p = spawn_worker(SLOW, "--pool", "processes", "--concurrency", "1", env=env)
    _cancel_running(redis_conn, Queue(redis_conn, Q))
    assert p.poll() is None


def test_sigkilled_worker_job_runs_again_one_result(redis_conn, redis_url, spawn_worker):
    env = {"INPUT_REDIS_URL": redis_url, "INPUT_QUEUE": Q, "GRIDQ_WORKER_LEASE_SECONDS": "1"}
    app = """
import os, time
import redis
from gridq.worker import App
from gridq.worker.broker import Broker, RecordUpdate, Settlement, _runs

app = App()
marks = redis.Redis.from_url(os.environ["INPUT_REDIS_URL"])

@app.task
def once(tag):
    if marks.incr("runs") == 1:
        time.sleep(60)  # the first run is killed in here
    return tag
"""
    q = Queue(redis_conn, Q)
    h = q.enqueue("once", "v")
    a = spawn_worker(app, env=env)
    wait_for(lambda: redis_conn.get("runs") == b"1", 30)  # inside the handler, not just claimed
    assert h.status() == "running"
    a.send_signal(signal.SIGKILL)
    a.wait(5)
    spawn_worker(app, env=env)
    assert h.get(timeout=60) == "v"
    assert redis_conn.get("runs") == b"2"
    assert redis_conn.llen(q.keys.done(h.id)) == 1  # one finish recorded
    assert h.info()["attempts"] == 1 and h.status() == "succeeded"


def test_unique_key_50_racing_producers(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)

    @app.task(unique_for=60)
    def order(n: int) -> int:
        return n

    barrier = threading.Barrier(50)
    got: list[str] = []
    lock = threading.Lock()

    def produce(i: int) -> None:
        q = Queue.from_url(redis_url, Q)  # a connection of its own, like a separate producer
        barrier.wait()
        h = q.enqueue("order", i, _key="order-42", _unique_for=60)
        with lock:
            got.append(h.id)

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 50 and len(set(got)) == 1
    assert redis_conn.llen(Q) == 1
    first = Queue(redis_conn, Q).job(got[0])
    start_worker(app)
    first.get(timeout=20)
    # unique_for=60: still the same job after it finished; another key is a new job.
    assert order.enqueue((1,), key="order-42") == first
    other = order.enqueue((1,), key="order-43", unique_for=0)
    assert other != first and other.get(timeout=20) == 1
    assert order.enqueue((2,), key="order-43").id != other.id  # released at once


def test_unique_key_released_on_cancel(redis_conn, redis_url):
    q = Queue.from_url(redis_url, Q)
    a = q.enqueue("x", _key="k")
    assert q.enqueue("x", _key="k") == a
    assert a.cancel()
    b = q.enqueue("x", _key="k")
    assert b != a and b.status() == "queued"


@pytest.mark.parametrize("name", ["broker.ADOPT", "jobs.ENQUEUE", "jobs.CANCEL", "jobs.WATCH"])
def test_job_scripts_take_every_key_through_keys(name: str) -> None:
    from gridq import jobs
    from gridq.worker import broker
    from tests import test_lua_keys

    mod, attr = name.split(".")
    test_lua_keys.SCRIPTS[name] = getattr({"broker": broker, "jobs": jobs}[mod], attr)
    try:
        test_lua_keys.test_script_takes_every_key_through_keys(name)
    finally:
        del test_lua_keys.SCRIPTS[name]
