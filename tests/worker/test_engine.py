"""Worker semantics, in-process (a Worker on a thread) against the real redis-server."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest
import redis

from gridq import keys, protocol
from gridq.errors import Reject, Retry
from gridq.protocol import Job
from gridq.queue import Queue
from gridq.worker import App
from gridq.worker import broker as broker_module
from gridq.worker.middleware import Middleware
from gridq.worker.worker import Worker
from tests.support import wait_for
from tests.worker.conftest import Running, settings

Q = "wq"
OUT = "wq-out"


def make_app(url: str, output: str | None = OUT) -> App:
    return App(input_url=url, input_queue=Q, output_url=url, output_queue=output)


def results(r: redis.Redis, n: int, timeout: float = 10.0) -> list[bytes]:
    wait_for(lambda: r.llen(OUT) >= n, timeout)
    return list(reversed(r.lrange(OUT, 0, -1)))  # oldest first


def test_app_rejects_unknown_options_and_reads_env_lazily(monkeypatch, redis_conn, redis_url):
    monkeypatch.delenv("INPUT_QUEUE", raising=False)
    app = App()  # no environment read here
    with pytest.raises(TypeError, match="retires"):

        @app.task(retires=3)
        def f() -> None: ...

    @app.task(retries=5, backoff=2.0, timeout=30)
    def add(x: int, y: int) -> int:
        return x + y

    assert add(2, 3) == 5 and add.options.retries == 5
    monkeypatch.setenv("INPUT_REDIS_URL", redis_url)
    monkeypatch.setenv("INPUT_QUEUE", "lazyq")
    jid = add.delay(2, 3)
    job = protocol.decode(redis_conn.rpop("lazyq"))
    assert job.id == jid and job.task == "add" and job.args == [2, 3]


def test_results_envelope_raw_and_none(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def nothing() -> None:
        return None

    @app.default
    def echo(item: bytes) -> Any:
        if item == b"none":
            return None
        if item == b"dict":
            return {"a": 1}
        if item == b"str":
            return "é"
        return item

    q = Queue(redis_conn, Q)
    jid = add.delay(2, 3)
    nothing.delay()
    q.push_raw(b"\xffbin", "none", "dict", "str")
    w = start_worker(app, burst=True, worker_pool="solo")
    assert w.join() == 0
    out = results(redis_conn, 5)
    env = json.loads(out[0])
    assert env["id"] == jid and env["status"] == "ok" and env["result"] == 5
    assert env["attempts"] == 1 and env["task"] == "add"
    assert json.loads(out[1])["result"] is None  # an envelope always gets its result object
    # raw: bytes and str as is, other values as JSON, None writes nothing
    assert out[2:] == [b"\xffbin", b'{"a":1}', "é".encode()]


def test_no_output_queue_writes_nothing(redis_conn, redis_url, start_worker):
    app = make_app(redis_url, output=None)

    @app.default
    def echo(item: bytes) -> bytes:
        return item

    Queue(redis_conn, Q).push_raw("a", "b")
    assert start_worker(app, burst=True).join() == 0
    assert redis_conn.dbsize() == 2  # stats and last_claim only
    assert set(redis_conn.keys()) == {b"gridq:q:{wq}:stats", b"gridq:q:{wq}:last_claim"}
    assert Queue(redis_conn, Q).stats()["processed"] == 2


def test_fifo_order(redis_conn, redis_url, start_worker):
    app = make_app(redis_url, None)
    seen: list[bytes] = []

    @app.default
    def rec(item: bytes) -> None:
        seen.append(item)

    Queue(redis_conn, Q).push_raw(*[str(i) for i in range(30)])
    assert start_worker(app, burst=True, worker_pool="solo").join() == 0
    assert seen == [str(i).encode() for i in range(30)]


def test_priority_higher_runs_first(redis_conn, redis_url, start_worker):
    app = make_app(redis_url, None)
    seen: list[str] = []

    @app.task
    def rec(tag: str) -> None:
        seen.append(tag)

    rec.enqueue(["low-1"])
    rec.enqueue(["p5"], priority=5)
    rec.enqueue(["low-2"])
    rec.enqueue(["p9"], priority=9)
    rec.enqueue(["p1"], priority=1)
    assert start_worker(app, burst=True, worker_pool="solo").join() == 0
    assert seen == ["p9", "p5", "p1", "low-1", "low-2"]


def test_retries_wait_in_delayed_zset_then_succeed(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)
    calls: list[float] = []

    @app.task(retries=3, backoff=0.2)
    def flaky() -> str:
        calls.append(time.time())
        if len(calls) < 3:
            raise ValueError("not yet")
        return "done"

    flaky.delay()
    q = Queue(redis_conn, Q)
    w = start_worker(app, burst=True)
    # The failed attempt waits in Redis (the delayed ZSET), not in worker memory.
    wait_for(lambda: redis_conn.zcard(keys.QueueKeys(Q).delayed) == 1, 5, 0.005)
    waiting = protocol.decode(redis_conn.zrange(keys.QueueKeys(Q).delayed, 0, 0)[0])
    assert waiting.attempt == 1
    assert w.join() == 0  # --burst waited for the pending retries
    res = json.loads(results(redis_conn, 1)[0])
    assert res["status"] == "ok" and res["result"] == "done" and res["attempts"] == 3
    assert len(calls) == 3 and calls[1] - calls[0] >= 0.1  # backoff with jitter: >= base/2
    s = q.stats()
    assert (s["processed"], s["failed"], s["retried"], s["dead"], s["delayed"]) == (1, 2, 2, 0, 0)


def test_dead_letter_after_last_try(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)

    @app.task(retries=1, backoff=0.05)
    def boom(x: int) -> None:
        raise ValueError(f"boom {x}")

    jid = boom.delay(7)
    assert start_worker(app, burst=True).join() == 0
    q = Queue(redis_conn, Q)
    [dead] = q.dead_letters()
    assert dead["id"] == jid and dead["error_type"] == "ValueError" and dead["error"] == "boom 7"
    assert "boom 7" in dead["traceback"] and "Traceback" in dead["traceback"]
    assert dead["attempts"] == 2 and "exhausted" in dead["reason"]
    # The original job, attempt 0: retry_dead gives it a fresh set of tries.
    assert protocol.decode(dead["item"].encode()).attempt == 0
    err = json.loads(results(redis_conn, 1)[0])
    assert err["status"] == "error" and "ValueError: boom 7" in err["error"]
    s = q.stats()
    assert (s["failed"], s["retried"], s["dead"], s["processed"]) == (2, 1, 1, 0)
    assert q.retry_dead() == 1
    again = protocol.decode(redis_conn.lindex(Q, -1))
    assert again.id == jid and again.attempt == 0


def test_raw_dead_letter_keeps_original_bytes(redis_conn, redis_url, start_worker):
    app = make_app(redis_url, None)

    @app.default(retries=1, backoff=0.05)
    def bad(item: bytes) -> None:
        raise RuntimeError("no")

    Queue(redis_conn, Q).push_raw(b"\xff\x00raw")
    assert start_worker(app, burst=True).join() == 0
    q = Queue(redis_conn, Q)
    [dead] = q.dead_letters()
    assert protocol.item_from_record(dead) == b"\xff\x00raw"
    assert q.retry_dead() == 1 and redis_conn.lindex(Q, -1) == b"\xff\x00raw"


def test_retry_and_reject_from_handler(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)
    runs: dict[str, int] = {"again": 0, "nope": 0}

    @app.task(retries=5, backoff=60)  # Retry(delay) overrides the 60 s backoff
    def again() -> str:
        runs["again"] += 1
        if runs["again"] == 1:
            raise Retry("later", delay=0.1)
        return "ok"

    @app.task(retries=5)
    def nope() -> None:
        runs["nope"] += 1
        raise Reject("bad input")

    again.delay()
    nope.delay()
    assert start_worker(app, burst=True).join() == 0
    assert runs == {"again": 2, "nope": 1}
    [dead] = Queue(redis_conn, Q).dead_letters()
    assert dead["error_type"] == "Reject" and dead["error"] == "bad input"
    assert dead["reason"] == "rejected by the handler"


def test_malformed_unknown_and_no_default_go_to_dlq(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)

    @app.task
    def ok() -> int:
        return 1

    redis_conn.lpush(Q, b'{"gridq": 1, "id": "m1", "task": "ok", "args": {}}')
    redis_conn.lpush(Q, b'{"gridq": 7, "id": "m2"}')
    Queue(redis_conn, Q).enqueue("ghost", 1)
    Queue(redis_conn, Q).push_raw("raw-but-no-default")
    ok.delay()
    assert start_worker(app, burst=True).join() == 0
    reasons = sorted(d["reason"] for d in Queue(redis_conn, Q).dead_letters())
    assert reasons == [
        "malformed envelope",
        "malformed envelope",
        "raw item but the app has no @app.default handler",
        "unknown task 'ghost'",
    ]
    errors = {d["error_type"] for d in Queue(redis_conn, Q).dead_letters()}
    assert errors == {"MalformedJob", "UnknownTask", "NoDefaultHandler"}
    assert any(json.loads(r).get("result") == 1 for r in redis_conn.lrange(OUT, 0, -1))
    s = Queue(redis_conn, Q).stats()
    assert s["dead"] == 4 and s["processed"] == 1 and s["failed"] == 0


def test_thread_pool_timeout_fails_job_and_replaces_slot(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)
    ran_to_the_end, exited = threading.Event(), threading.Event()

    @app.task(timeout=0.3, retries=0)
    def slow() -> None:
        try:
            for _ in range(200):  # 2 s of pure Python: the asynchronous JobTimeout stops it
                time.sleep(0.01)
            ran_to_the_end.set()
        finally:
            exited.set()

    @app.task
    def quick() -> str:
        return "quick"

    slow.delay()
    quick.delay()
    assert start_worker(app, burst=True, worker_concurrency=1).join() == 0
    [dead] = Queue(redis_conn, Q).dead_letters()
    assert dead["error_type"] == "JobTimeout" and "0.3" in dead["error"]
    assert any(json.loads(r).get("result") == "quick" for r in redis_conn.lrange(OUT, 0, -1))
    # Wait for the abandoned thread to leave the handler (interrupted, or at the loop's
    # natural end 2 s in): only an interruption leaves the loop unfinished.
    assert exited.wait(30), "the timed-out handler never returned"
    assert not ran_to_the_end.is_set(), "JobTimeout did not interrupt the handler's thread"


def test_asyncio_pool_runs_coroutines_concurrently_with_timeouts(
    redis_conn, redis_url, start_worker
):
    import asyncio

    app = make_app(redis_url)
    active = [0, 0]  # now, max

    @app.task
    async def nap(i: int) -> int:
        active[0] += 1
        active[1] = max(active[1], active[0])
        await asyncio.sleep(0.2)
        active[0] -= 1
        return i

    @app.task(timeout=0.2, retries=0)
    async def forever() -> None:
        await asyncio.sleep(60)

    @app.task
    def plain(x: int) -> int:  # a plain function runs off the loop
        return x * 2

    for i in range(10):
        nap.delay(i)
    forever.delay()
    plain.delay(21)
    assert start_worker(app, burst=True, worker_pool="asyncio").join() == 0
    out = [json.loads(r) for r in redis_conn.lrange(OUT, 0, -1)]
    assert sorted(o["result"] for o in out if o["task"] == "nap") == list(range(10))
    assert [o["result"] for o in out if o["task"] == "plain"] == [42]
    assert active[1] > 1
    [dead] = Queue(redis_conn, Q).dead_letters()
    assert dead["error_type"] == "JobTimeout"


def test_handler_can_start_process_pools_in_thread_pool(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)

    @app.task
    def fan_out(n: int) -> int:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            a = sum(pool.map(abs, range(-n, 0)))
        with ProcessPoolExecutor(2, mp_context=ctx) as ex:
            b = sum(ex.map(abs, range(-n, 0)))
        return a + b

    fan_out.delay(4)
    assert start_worker(app, burst=True).join() == 0
    [res] = [json.loads(r) for r in redis_conn.lrange(OUT, 0, -1)]
    assert res["status"] == "ok" and res["result"] == 20


def test_paused_queue_is_not_claimed(redis_conn, redis_url, start_worker):
    app = make_app(redis_url, None)
    seen: list[bytes] = []

    @app.default
    def rec(item: bytes) -> None:
        seen.append(item)

    q = Queue(redis_conn, Q)
    q.pause()
    q.push_raw("x")
    w = start_worker(app)
    time.sleep(0.8)
    assert seen == [] and redis_conn.llen(Q) == 1
    q.resume()
    wait_for(lambda: seen == [b"x"], 5)
    assert w.stop() == 0


def test_long_job_not_handed_to_second_worker(redis_conn, redis_url, start_worker):
    app = make_app(redis_url)
    runs: list[str] = []

    @app.task
    def long() -> str:
        runs.append(threading.current_thread().name)
        time.sleep(3.2)  # more than 3 leases of 1 s
        return "done"

    long.delay()
    w1 = start_worker(app, worker_lease_seconds=1.0)
    wait_for(lambda: runs, 5)
    w2 = start_worker(app, worker_lease_seconds=1.0)  # its reaper runs every 0.5 s
    wait_for(lambda: redis_conn.llen(OUT) == 1, 10)
    assert len(runs) == 1
    assert json.loads(redis_conn.lindex(OUT, 0))["result"] == "done"
    assert w1.stop() == 0 and w2.stop() == 0


def test_reaper_returns_dead_consumers_jobs_to_the_head(redis_conn, redis_url, start_worker):
    app = make_app(redis_url, None)
    seen: list[bytes] = []

    @app.default
    def rec(item: bytes) -> None:
        seen.append(item)

    k = keys.QueueKeys(Q)
    # A consumer that died holding two jobs (claimed oldest first), no lease left.
    redis_conn.lpush(k.inflight("ghost"), b"held-1", b"held-2")
    redis_conn.zadd(k.consumers, {"ghost": time.time() - 100})
    assert start_worker(app, burst=True, worker_pool="solo").join() == 0
    assert seen == [b"held-1", b"held-2"]  # back at the head, in their order
    assert not redis_conn.exists(k.inflight("ghost"))
    assert redis_conn.zrange(k.consumers, 0, -1) == []


def test_metrics_endpoint_and_health_count_exactly(redis_conn, redis_url, start_worker):
    from tests.support import free_port

    app = make_app(redis_url, None)

    @app.default(retries=0)
    def rec(item: bytes) -> None:
        if item == b"bad":
            raise ValueError("bad")

    Queue(redis_conn, Q).push_raw(*(["ok"] * 7), "bad")
    Queue(redis_conn, Q).enqueue("ghost")
    port = free_port()
    w = start_worker(app, metrics_port=port, metrics_host="127.0.0.1")
    wait_for(lambda: Queue(redis_conn, Q).stats()["dead"] == 2, 10)
    wait_for(lambda: Queue(redis_conn, Q).stats()["processed"] == 7, 10)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    lines = {
        ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in text.splitlines() if ln and ln[0] != "#"
    }
    assert lines['gridq_jobs_total{outcome="ok",queue="wq",task="default"}'] == 7
    assert lines['gridq_jobs_total{outcome="failed",queue="wq",task="default"}'] == 1
    assert lines['gridq_jobs_total{outcome="dead",queue="wq",task="ghost"}'] == 1
    assert lines['gridq_job_duration_seconds_count{queue="wq",task="default"}'] == 8
    assert lines['gridq_jobs_in_flight{queue="wq"}'] == 0
    assert any(k.startswith("gridq_worker_info{") for k in lines)
    health = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
    assert health.status == 200 and json.loads(health.read())["status"] == "ok"
    assert w.stop() == 0


def test_every_key_is_from_keys_module(redis_conn, redis_url, start_worker):
    import re

    app = make_app(redis_url)

    @app.task(retries=1, backoff=0.05)
    def maybe(x: int) -> int:
        time.sleep(0.1)  # long enough for the poll below to see the in-flight list
        if x < 0:
            raise ValueError("neg")
        return x

    maybe.delay(1)
    maybe.enqueue([2], priority=3)
    maybe.delay(-1)
    w = start_worker(app, burst=True)
    seen: set[bytes] = set()
    while w.thread.is_alive():
        seen.update(redis_conn.keys())
        time.sleep(0.01)
    seen.update(redis_conn.keys())
    patterns = [
        re.compile(
            "^"
            + re.escape(p)
            .replace("<queue>", "[^:{}]+")
            .replace("<consumer>", ".+")
            .replace("<level>", "[1-9]")
            .replace("<id>", ".+")
            .replace("<name>", ".+")
            + "$"
        )
        for p in keys.all_documented()
    ]
    stray = [
        k for k in seen if k.decode() != OUT and not any(p.match(k.decode()) for p in patterns)
    ]
    assert not stray
    assert b"gridq:q:{wq}:stats" in seen and any(b":inflight:" in k for k in seen)


def test_demo_app(redis_conn, redis_url, start_worker):
    from gridq.examples import demo

    app = demo.app
    app.input_url, app.input_queue, app.output_url, app.output_queue = redis_url, Q, redis_url, OUT
    app._queue = None
    demo.primes_below.delay(30)
    Queue(redis_conn, Q).push_raw("12")
    assert start_worker(app, burst=True, worker_pool="solo").join() == 0
    out = results(redis_conn, 2)
    assert json.loads(out[0])["result"] == 10 and out[1] == b"144"


class _SettledIn(Middleware):
    """The name of the thread that settled each succeeded job."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def on_ok(self, job: Job, task: str, duration: float) -> None:
        self.threads.append(threading.current_thread().name)


@pytest.mark.parametrize(
    ("pool", "lone_job_settler"),
    # solo runs its jobs in the fetching thread
    [("threads", "gridq-job-"), ("solo", "gridq-fetch"), ("asyncio", "gridq-settle")],
)
def test_a_lone_job_is_settled_where_it_ran_and_a_busy_queue_in_batches(
    pool: str,
    lone_job_settler: str,
    redis_conn: redis.Redis,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A job that finds the worker idle has nothing to share a settle with: the thread
    # that ran it settles it, saving a thread wake-up on its round trip. Not on the
    # asyncio pool, whose event loop must never wait on Redis; not for a busy queue,
    # whose outcomes the settle thread gathers into batches.
    app = make_app(redis_url, None)

    @app.task
    def noop() -> None:
        pass

    where = _SettledIn()
    q = Queue(redis_conn, Q)
    run = Running(
        Worker(app, settings(worker_pool=pool), middleware=[where], install_signals=False)
    )
    try:
        wait_for(lambda: redis_conn.zcard(keys.QueueKeys(Q).consumers) == 1, 10)
        for n in range(1, 4):  # one at a time: each finds the worker idle
            q.enqueue("noop").get(timeout=10)
            wait_for(lambda n=n: len(where.threads) == n, 10)  # on_ok follows the settle
            assert where.threads[-1].startswith(lone_job_settler), where.threads
        run.stop()
        calls: list[str] = []  # the thread of each settle call
        settle = broker_module.Broker.settle

        def counted(self: broker_module.Broker, *a: Any, **kw: Any) -> int:
            calls.append(threading.current_thread().name)
            return settle(self, *a, **kw)

        monkeypatch.setattr(broker_module.Broker, "settle", counted)
        for _ in range(300):
            q.enqueue("noop")
        run = Running(
            Worker(
                app,
                settings(worker_pool=pool),
                burst=True,
                middleware=[where],
                install_signals=False,
            )
        )
        assert run.join() == 0
        assert len(where.threads) == 3 + 300
        # Pending reaches 0 after the last claim emptied the queue only once, at the
        # end: at most that one settle (of whatever was still waiting) runs elsewhere.
        assert calls.count("gridq-settle") >= 2, Counter(calls)
        assert len(calls) - calls.count("gridq-settle") <= 1, Counter(calls)
    finally:
        if run.thread.is_alive():
            run.stop()
