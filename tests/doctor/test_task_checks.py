"""Task and queue checks on a real Redis, each broken situation set up for real."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from doctor_helpers import by_name

from gridq.doctor.runner import run_server
from gridq.doctor.task_checks import TaskInfo
from gridq.keys import QueueKeys
from gridq.queue import Queue


def task(url: str, name: str = "resize", **kw: Any) -> TaskInfo:
    base: dict[str, Any] = {
        "name": name,
        "input_redis": url,
        "input_queue": f"{name}-in",
        "output_queue": f"{name}-out",
        "image": "example/resize:1",
    }
    base.update(kw)
    return TaskInfo(**base)


def for_task(results: list[Any], name: str) -> list[Any]:
    return [r for r in results if r.target == f"task {name}"]


def test_jobs_in_a_queue_no_task_reads(redis_conn: Any, redis_url: str) -> None:
    t = task(redis_url)
    q = Queue.from_url(redis_url, "resize-inn")  # the producer's typo
    for i in range(3):
        q.enqueue("resize", i)
    redis_conn.lpush("resize-IN", b"raw item")  # a raw LPUSH with the wrong case
    res = run_server(redis_url, [t], [], window=0)
    unread = [r for r in res if r.name == "queue.unread" and r.status == "fail"]
    names = " ".join(r.saw for r in unread)
    assert "'resize-inn'" in names and "'resize-IN'" in names
    assert any("did you mean 'resize-in'" in r.fix for r in unread)


def test_nobody_listens(redis_conn: Any, redis_url: str) -> None:
    t = task(redis_url, desired=2, placed=0, running=0)
    Queue.from_url(redis_url, t.input_queue).push_raw("a", "b")
    res = for_task(run_server(redis_url, [t], [], window=0), "resize")
    c = by_name(res, "task.listening")
    assert c.status == "fail" and "nobody listens" in c.saw
    assert "constraints" in c.fix
    assert by_name(res, "task.placement").status == "warn"


def test_running_workers_reading_another_queue(redis_conn: Any, redis_url: str) -> None:
    t = task(redis_url, desired=1, placed=1, running=1)
    Queue.from_url(redis_url, t.input_queue).push_raw("a")
    redis_conn.set(QueueKeys(t.input_queue).last_claim, time.time() - 600)
    c = by_name(run_server(redis_url, [t], [], window=0), "task.listening")
    assert c.status == "fail", c
    # The last claim was 600 s before the check (a second more if the clock ticked).
    idle = re.search(r"no worker has claimed a job for (\d+) s", c.saw)
    assert idle and 600 <= int(idle[1]) <= 660, c.saw
    assert "read another queue" in c.fix


def test_recent_claims_are_fine(redis_conn: Any, redis_url: str) -> None:
    t = task(redis_url)
    Queue.from_url(redis_url, t.input_queue).push_raw("a")
    redis_conn.set(QueueKeys(t.input_queue).last_claim, time.time())
    assert by_name(run_server(redis_url, [t], [], window=0), "task.listening").status == "ok"


def _fake_worker(url: str, t: TaskInfo, write: bool, stop: threading.Event) -> None:
    """Claims and 'processes' jobs the way the worker's counters show it."""
    import redis

    c = redis.Redis.from_url(url)
    k = QueueKeys(t.input_queue)
    while not stop.is_set():
        c.set(k.last_claim, time.time())
        c.hincrby(k.stats, "processed", 1)
        if write:
            c.lpush(t.output_queue, b"result")
        time.sleep(0.05)
    c.close()


def _with_worker(url: str, t: TaskInfo, write: bool) -> list[Any]:
    stop = threading.Event()
    th = threading.Thread(target=_fake_worker, args=(url, t, write, stop))
    th.start()
    try:
        return run_server(url, [t], [], window=0.5)
    finally:
        stop.set()
        th.join()


def test_output_queue_stays_empty(redis_conn: Any, redis_url: str) -> None:
    t = task(redis_url)
    c = by_name(_with_worker(redis_url, t, write=False), "task.output")
    assert c.status == "fail" and "stays empty" in c.saw and "'resize-out'" in c.saw
    assert "return a value" in c.fix


def test_output_queue_filled_is_ok(redis_conn: Any, redis_url: str) -> None:
    t = task(redis_url)
    assert by_name(_with_worker(redis_url, t, write=True), "task.output").status == "ok"


def test_output_consumed_by_a_pipeline_is_ok(redis_conn: Any, redis_url: str) -> None:
    t = task(redis_url)
    redis_conn.zadd(QueueKeys(t.output_queue).consumers, {"next-stage-1": time.time()})
    assert by_name(_with_worker(redis_url, t, write=False), "task.output").status == "ok"


def test_dead_letters_with_top_reasons(redis_conn: Any, redis_url: str) -> None:
    from gridq import protocol

    t = task(redis_url)
    k = QueueKeys(t.input_queue)
    for i in range(3):
        rec = protocol.dead_record(
            b"x",
            job_id=str(i),
            task="resize",
            reason="retries exhausted",
            error_type="KeyError",
            message="'width'",
        )
        redis_conn.lpush(k.dead, rec)
    rec = protocol.dead_record(
        b"y",
        job_id="9",
        task="resize",
        reason="rejected",
        error_type="ValueError",
        message="bad image",
    )
    redis_conn.lpush(k.dead, rec)
    c = by_name(run_server(redis_url, [t], [], window=0), "task.dead-letters")
    assert c.status == "warn"
    assert "4 dead jobs" in c.saw and "KeyError: 'width' (x3)" in c.saw
    assert "gridq dlq retry resize-in" in c.fix


def test_instances_oom_and_crashloop(redis_conn: Any, redis_url: str) -> None:
    t = task(redis_url)
    nodes = [
        {
            "node_id": "n1",
            "hostname": "box1",
            "instances": [
                {
                    "instance_id": "i1",
                    "task": "resize",
                    "state": "crashloop",
                    "exit_code": 137,
                    "restarts": 5,
                    "error": "OOM-killed (exit 137): the container hit its memory limit",
                },
                {"instance_id": "i2", "task": "other", "state": "running"},
            ],
        }
    ]
    c = by_name(run_server(redis_url, [t], nodes, window=0), "task.instances")
    assert c.status == "fail" and "OOM-killed" in c.saw and "memory" in c.fix
    nodes[0]["instances"][0].update(exit_code=1, error="exec format error: image is linux/arm64")
    c = by_name(run_server(redis_url, [t], nodes, window=0), "task.instances")
    assert "architecture" in c.fix


def test_unknown_task_and_bad_task_redis(redis_conn: Any, redis_url: str, make_redis: Any) -> None:
    assert run_server(redis_url, [], [], task="nope")[0].name == "task.exists"
    srv = make_redis("right-pass-123")
    bad = task(f"redis://:wrong-pass-456@127.0.0.1:{srv.port}/0", name="bad")
    res = run_server(redis_url, [bad], [], window=0)
    cred = [r for r in res if r.name == "redis.credentials" and "task bad" in r.target]
    assert cred and cred[0].status == "fail" and "WRONGPASS" in cred[0].saw
    assert "wrong-pass-456" not in str([r.model_dump() for r in res])
