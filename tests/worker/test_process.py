"""Real `gridq worker` processes: crashes, signals, Redis trouble, pools, health."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import redis

from gridq import keys, protocol
from gridq.errors import EXIT_REDIS_AUTH
from gridq.queue import Queue
from tests.support import RedisServer, free_port, wait_for

APP = """
import os, time
import redis
from gridq.worker import App

app = App()
marks = redis.Redis.from_url(os.environ["INPUT_REDIS_URL"])

@app.task
def sleepy(tag, seconds):
    marks.rpush("started", tag)
    time.sleep(seconds)
    marks.rpush("finished", tag)
    return tag
"""


def env_for(url: str, queue: str = "pq", **extra: str) -> dict[str, str]:
    return {"INPUT_REDIS_URL": url, "INPUT_QUEUE": queue, "OUTPUT_QUEUE": "pq-out", **extra}


def started(r: redis.Redis) -> list[bytes]:
    return list(r.lrange("started", 0, -1))


def test_sigkilled_worker_job_comes_back_after_its_lease(redis_conn, redis_url, spawn_worker):
    q = Queue(redis_conn, "pq")
    jid = q.enqueue("sleepy", "a", 0.5)
    env = env_for(redis_url, GRIDQ_WORKER_LEASE_SECONDS="1")
    a = spawn_worker(APP, env=env)
    wait_for(lambda: started(redis_conn) == [b"a"], 20)
    a.send_signal(signal.SIGKILL)
    a.wait(5)
    assert q.stats()["in_flight"] == 1  # still claimed by the dead worker, not lost
    # A new worker reclaims it once the dead one's 1 s lease has run out (how soon is
    # bench/ business; 60 s is only the hang guard).
    spawn_worker(APP, env=env)
    wait_for(lambda: redis_conn.llen("pq-out") == 1, 60)
    res = json.loads(redis_conn.lindex("pq-out", 0))
    assert res["id"] == jid and res["status"] == "ok"
    assert started(redis_conn) == [b"a", b"a"]
    wait_for(lambda: q.stats()["in_flight"] == 0, 5)


def test_sigterm_finishes_running_and_requeues_prefetched_at_head(
    redis_conn, redis_url, spawn_worker
):
    q = Queue(redis_conn, "pq")
    for tag in ("a", "b", "c", "d"):
        q.enqueue("sleepy", tag, 1.0)
    env = env_for(redis_url, GRIDQ_WORKER_CONCURRENCY="1", GRIDQ_WORKER_PREFETCH="3")
    w = spawn_worker(APP, env=env)
    wait_for(lambda: started(redis_conn) == [b"a"], 20)
    assert redis_conn.llen("pq") == 0  # b, c, d prefetched
    w.send_signal(signal.SIGTERM)
    assert w.wait(15) == 0
    assert redis_conn.lrange("finished", 0, -1) == [b"a"]  # the running job finished
    assert json.loads(redis_conn.lindex("pq-out", 0))["result"] == "a"
    # b, c, d back at the head (right end), in their order: b runs next.
    tags = [protocol.decode(i).args[0] for i in reversed(redis_conn.lrange("pq", 0, -1))]
    assert tags == ["b", "c", "d"]
    assert q.stats()["in_flight"] == 0 and q.stats()["consumers"] == 0


def test_second_signal_requeues_running_and_exits_at_once(redis_conn, redis_url, spawn_worker):
    q = Queue(redis_conn, "pq")
    q.enqueue("sleepy", "long", 60)
    w = spawn_worker(APP, env=env_for(redis_url))
    wait_for(lambda: started(redis_conn) == [b"long"], 20)
    w.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    w.send_signal(signal.SIGINT)
    assert w.wait(5) == 0
    assert redis_conn.llen("pq") == 1 and q.stats()["in_flight"] == 0
    assert protocol.decode(redis_conn.lindex("pq", -1)).args == ["long", 60]


def test_wrong_password_exits_77_with_one_line(make_redis, spawn_worker):
    srv = make_redis("right-secret")
    url = f"redis://:wrong-secret@127.0.0.1:{srv.port}/0"
    w = spawn_worker(
        APP.replace('marks = redis.Redis.from_url(os.environ["INPUT_REDIS_URL"])', ""),
        env=env_for(url),
    )
    assert w.wait(20) == EXIT_REDIS_AUTH
    err = w.stderr.read() if w.stderr else ""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "WRONGPASS" in lines[0]
    assert "wrong-secret" not in err and "***" in err


def test_redis_restart_mid_run(redis_binary, tmp_path: Path, spawn_worker):
    srv = RedisServer(redis_binary, tmp_path / "rr")
    srv.workdir.mkdir()
    srv.start("--appendonly", "yes", "--appendfsync", "always")
    try:
        r = srv.client()
        q = Queue(r, "pq")
        app = APP.replace("time.sleep(seconds)", "time.sleep(seconds)")
        w = spawn_worker(app, env=env_for(srv.url, GRIDQ_WORKER_LEASE_SECONDS="2"))
        q.enqueue("sleepy", "before", 1.5)
        wait_for(lambda: started(r) == [b"before"], 20)
        srv.stop()  # the job is running; its ack must wait for Redis
        time.sleep(0.5)
        srv.start("--appendonly", "yes", "--appendfsync", "always")
        r = srv.client()
        q = Queue(r, "pq")
        q.enqueue("sleepy", "after", 0)
        wait_for(lambda: r.llen("pq-out") >= 2, 20)
        tags = sorted(json.loads(x)["result"] for x in r.lrange("pq-out", 0, -1))
        assert tags == ["after", "before"]
        wait_for(lambda: q.stats()["in_flight"] == 0, 10)
        w.send_signal(signal.SIGTERM)
        assert w.wait(10) == 0
        err = w.stderr.read() if w.stderr else ""
        assert err.count("Redis trouble") == 1, err
        assert err.count("reachable again") == 1, err
    finally:
        srv.stop()


PROC_APP = """
import multiprocessing, os, time
from concurrent.futures import ProcessPoolExecutor
from gridq.worker import App

app = App()

@app.task
def fan_out(n):
    with multiprocessing.Pool(2) as pool:
        a = sum(pool.map(abs, range(-n, 0)))
    with ProcessPoolExecutor(2) as ex:
        b = sum(ex.map(abs, range(-n, 0)))
    return [a + b, os.getpid()]

@app.task(timeout=0.5, retries=0)
def stuck():
    time.sleep(60)

@app.default
def pid(item):
    return str(os.getpid())
"""


def test_processes_pool_children_may_fork_and_timeouts_kill(redis_conn, redis_url, spawn_worker):
    q = Queue(redis_conn, "pq")
    q.enqueue("fan_out", 4)
    q.enqueue("stuck")
    q.push_raw(*["x"] * 5)
    w = spawn_worker(
        PROC_APP,
        "--pool",
        "processes",
        "--concurrency",
        "1",
        "--burst",
        env={**env_for(redis_url), "GRIDQ_WORKER_MAX_JOBS_PER_CHILD": "3"},
    )
    assert w.wait(60) == 0, w.stderr.read() if w.stderr else ""
    out = [x for x in reversed(redis_conn.lrange("pq-out", 0, -1))]
    first = json.loads(out[0])
    assert first["status"] == "ok" and first["result"][0] == 20
    [dead] = q.dead_letters()
    assert dead["error_type"] == "JobTimeout"
    pids = {int(x) for x in out[2:]}
    assert os_getpid_differs(pids, first["result"][1])


def os_getpid_differs(pids: set[int], first_pid: int) -> bool:
    # The stuck job's child was killed and children recycle every 3 jobs:
    # the raw jobs ran in more than one fresh child, none of them the first.
    return len(pids) >= 2 and first_pid not in pids


def test_check_probe_answers_while_alive(redis_conn, redis_url, spawn_worker):
    port = free_port()
    env = env_for(redis_url, GRIDQ_METRICS_PORT=str(port), INSTANCE_ID="probe-1")
    w = spawn_worker(APP, env=env)
    wait_for(lambda: redis_conn.exists(keys.QueueKeys("pq").alive("probe-1")), 20)
    import os
    import sys

    root = Path(__file__).resolve().parents[2]
    base_env = {**os.environ, "PYTHONPATH": str(root), **env}
    wait_for(
        lambda: (
            subprocess.run(
                [sys.executable, "-m", "gridq.cli.main", "worker", "--check"],
                env=base_env,
                capture_output=True,
            ).returncode
            == 0
        ),
        10,
        0.2,
    )
    w.send_signal(signal.SIGTERM)
    assert w.wait(10) == 0
    r = subprocess.run(
        [sys.executable, "-m", "gridq.cli.main", "worker", "--check"],
        env=base_env,
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "unhealthy" in r.stderr
