"""Grid-wide rate and concurrency limits (issue #14), enforced in the claim scripts
across worker processes. Logical checks (counts, windows, order), not speed."""

from __future__ import annotations

import pytest

from gridq.queue import Queue
from gridq.worker import App
from tests.support import wait_for

Q = "lq"

LIMITED = """
import os, time
import redis
from gridq.worker import App

app = App()
marks = redis.Redis.from_url(os.environ["INPUT_REDIS_URL"])

@app.task(rate_limit="20/s")
def tick(i):
    marks.rpush("starts", repr(time.time()))
    return i

@app.task(concurrency_limit=2)
def busy(i):
    now = marks.incr("running")
    marks.rpush("seen", now)
    time.sleep(0.05)
    marks.decr("running")
    return i
"""


def env(url: str) -> dict[str, str]:
    return {"INPUT_REDIS_URL": url, "INPUT_QUEUE": Q, "GRIDQ_WORKER_LEASE_SECONDS": "3"}


def test_rate_limit_holds_across_three_worker_processes(redis_conn, redis_url, spawn_worker):
    q = Queue(redis_conn, Q)
    handles = [q.enqueue("tick", i) for i in range(300)]
    for _ in range(3):
        spawn_worker(LIMITED, "--concurrency", "4", env=env(redis_url))
    wait_for(lambda: redis_conn.llen("starts") == 300, 120, 0.5)
    starts = sorted(float(t) for t in redis_conn.lrange("starts", 0, -1))
    worst = max(sum(1 for t in starts[i:] if t < s + 1.0) for i, s in enumerate(starts))
    assert worst <= 22, f"{worst} starts in one second under rate_limit=20/s"
    assert starts[-1] - starts[0] >= 14  # 300 jobs at 20/s: the logical rate, not speed
    assert all(h.status() == "succeeded" for h in handles[:5])
    assert q.stats()["failed"] == 0 and q.stats()["retried"] == 0  # waiting spent no try


def test_concurrency_limit_across_workers(redis_conn, redis_url, spawn_worker):
    q = Queue(redis_conn, Q)
    handles = [q.enqueue("busy", i) for i in range(60)]
    for _ in range(3):
        spawn_worker(LIMITED, "--concurrency", "8", env=env(redis_url))
    for h in handles:
        h.get(timeout=120)
    seen = [int(x) for x in redis_conn.lrange("seen", 0, -1)]
    assert len(seen) == 60 and max(seen) <= 2
    wait_for(lambda: redis_conn.zcard(q.keys.slots("busy")) == 0, 10)  # every slot freed


def test_limited_task_does_not_hold_up_others(redis_conn, redis_url, start_worker):
    app = App(input_url=redis_url, input_queue=Q)

    @app.task(rate_limit="1/h")
    def slow_lane(i: int) -> int:
        redis_conn.rpush("slow", i)
        return i

    @app.task
    def fast_lane(i: int) -> int:
        return i

    q = Queue(redis_conn, Q)
    limited = []
    fast = []
    for i in range(40):  # interleaved in one queue
        limited.append(slow_lane.delay(i))
        fast.append(fast_lane.delay(i))
    start_worker(app, worker_concurrency=4)
    for h in fast:
        assert h.get(timeout=60) is not None
    # All 40 unlimited jobs are done while the limited task ran exactly once (1/h)
    # and its other jobs still wait, untouched: no failure, no try spent.
    assert redis_conn.llen("slow") == 1
    waiting = [h.status() for h in limited]
    assert waiting.count("succeeded") == 1 and waiting.count("queued") == 39
    assert q.stats()["delayed"] == 39 and q.stats()["retried"] == 0


def test_limit_options_are_checked() -> None:
    app = App()
    with pytest.raises(TypeError, match="rate_limit"):

        @app.task(rate_limit="fast")
        def a() -> None: ...

    with pytest.raises(TypeError, match="concurrency_limit"):

        @app.task(concurrency_limit=0)
        def b() -> None: ...
