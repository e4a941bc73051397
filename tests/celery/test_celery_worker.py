"""A real Celery worker subprocess under gridq, on a real redis-server (threads pool).

One worker serves the module (starting one costs ~2 s); each test uses its own
queue, so the counts of one test never mix with another's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import TimeLimitExceeded
from prometheus_client.parser import text_string_to_metric_families

from tests.support import RedisServer, free_port

HERE = Path(__file__).resolve().parent
PASSWORD = "s3cret-celery-pw"
QUEUES = ("c_count", "c_pool", "c_limits")


class Worker:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, port: int | None) -> None:
        self.proc = proc
        self.log = log
        self.port = port

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.text()}")
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} not in the worker's log:\n{self.text()}")

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        assert self.port
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read()
        out = {}
        for fam in text_string_to_metric_families(body.decode()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                # The whole session: processes a task forked would outlive the worker.
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_worker(
    url: str, tmp: Path, args: list[str], *, env: dict[str, str] | None = None,
    metrics: bool = True, wrapper: bool = True, name: str = "worker",
) -> Worker:  # fmt: skip
    port = free_port() if metrics else None
    e = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "GRIDQ_"))}
    e.update(
        INPUT_REDIS_URL=url,  # the node's variable; the wrapper makes it the broker URL
        TEST_RESULT_BACKEND=url,
        PYTHONPATH=os.pathsep.join([str(HERE), e.get("PYTHONPATH", "")]),
        PYTHONUNBUFFERED="1",
    )
    if port:
        e["GRIDQ_METRICS_PORT"] = str(port)
    e.update(env or {})
    if wrapper:
        cmd = [sys.executable, "-m", "gridq.worker.celery", "-A", "gridq_celery_proj:app", "worker"]
    else:
        e.setdefault("CELERY_BROKER_URL", url)
        cmd = [sys.executable, "-m", "celery", "-A", "gridq_celery_proj:app", "worker"]
    cmd += ["--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    log = tmp / f"{name}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd + args, env=e, cwd=tmp, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Worker(proc, log, port)


@pytest.fixture(scope="module")
def broker(redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    # With a password, so the tests can check it never reaches a log line.
    srv = RedisServer(redis_binary, tmp_path_factory.mktemp("celery-redis"), password=PASSWORD)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def worker(broker: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = start_worker(
        broker.url,
        tmp_path_factory.mktemp("celery-worker"),
        ["-Q", ",".join(QUEUES), "--concurrency", "4", "--hostname", "inst-1"],
    )
    try:
        w.wait_for("ready.")
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def capp(broker: RedisServer) -> Any:
    import gridq_celery_proj

    gridq_celery_proj.app.conf.broker_url = broker.url
    gridq_celery_proj.app.conf.result_backend = broker.url
    return gridq_celery_proj


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def result(r: Any, timeout: float = 30.0, worker: Worker | None = None) -> Any:
    """The task's result (or exception), polling the backend's key.

    Polls instead of AsyncResult.get(): the Redis backend's get() rides a pub/sub
    connection that has proved flaky on this shared 2-core machine.
    """
    deadline = time.monotonic() + timeout
    while not r.ready():
        if time.monotonic() > deadline:
            # The worker's lines about this task say where it stopped (received, retry...).
            seen = [ln for ln in worker.text().splitlines() if r.id in ln] if worker else []
            raise AssertionError(
                f"task {r.id} not done after {timeout}s (state {r.state}); worker log:\n"
                + "\n".join(seen[-20:])
            )
        time.sleep(0.05)
    return r.result


def jobs(m: dict[Any, float], queue: str, task: str, outcome: str) -> float:
    key = ("gridq_jobs_total", (("outcome", outcome), ("queue", queue), ("task", task)))
    return m.get(key, 0.0)


def test_metrics_and_stats_count_exactly(worker: Worker, capp: Any, broker: RedisServer) -> None:
    q = "c_count"
    n_ok, n_fail, n_flaky, tries = 20, 5, 3, 2
    oks = [capp.add.apply_async((i, i), queue=q) for i in range(n_ok)]
    fails = [capp.boom.apply_async((f"no {i}",), queue=q) for i in range(n_fail)]
    flakies = [capp.flaky.apply_async((tries,), queue=q) for _ in range(n_flaky)]
    capp.app.send_task("gridq_celery_proj.not_registered", queue=q)  # task_unknown -> dead

    assert [result(r, 30) for r in oks] == [2 * i for i in range(n_ok)]
    for r in fails:
        assert isinstance(result(r, 30), ValueError)
    assert [result(r, 30, worker) for r in flakies] == [tries] * n_flaky

    t = "gridq_celery_proj."
    want = {
        (t + "add", "ok"): n_ok,
        (t + "boom", "failed"): n_fail,
        (t + "flaky", "retried"): n_flaky * tries,
        (t + "flaky", "ok"): n_flaky,
        (t + "not_registered", "dead"): 1,
    }

    def counted() -> dict[Any, float]:
        m = worker.scrape()
        got = {k: jobs(m, q, *k) for k in want}
        assert got == want
        return m

    m = eventually(counted)
    # Nothing else was counted for this queue, no outcome twice.
    total = sum(
        v
        for (name, labels), v in m.items()
        if name == "gridq_jobs_total" and ("queue", q) in labels
    )
    assert total == sum(want.values())
    dur = ("gridq_job_duration_seconds_count", (("queue", q), ("task", t + "add")))
    assert m[dur] == n_ok
    flaky_runs = ("gridq_job_duration_seconds_count", (("queue", q), ("task", t + "flaky")))
    assert m[flaky_runs] == n_flaky * (tries + 1)
    assert m[("gridq_jobs_in_flight", (("queue", q),))] == 0
    # The native worker's info metric, with the instance id and pool.
    info = [lab for (name, lab) in m if name == "gridq_worker_info"]
    assert info and ("pool", "threads") in info[0] and ("kind", "celery") in info[0]

    # The hub's counters in Redis, batched by the flusher (every 0.5 s).
    conn = broker.client()

    def stats() -> None:
        raw = conn.hgetall(f"gridq:q:{{{q}}}:stats")
        got = {k.decode(): int(v) for k, v in raw.items()}
        assert got == {
            "processed": n_ok + n_flaky,
            "failed": n_fail,
            "retried": n_flaky * tries,
            "dead": 1,
        }

    eventually(stats)

    # The same numbers through gridq's own Queue.stats(), as the hub reads them.
    from gridq.queue import Queue

    s = Queue(conn, q).stats()
    assert (s["processed"], s["failed"]) == (n_ok + n_flaky, n_fail)


def test_task_starting_a_multiprocessing_pool_works_under_default_pool(
    worker: Worker, capp: Any
) -> None:
    # No -P given: the wrapper's default pool is threads (Celery's banner says "(thread)").
    assert "(thread)" in worker.text(), worker.text()
    # Several, concurrently: a Pool's exit used to hang now and then, when its forked
    # children inherited the Celery worker's SIGTERM handler (see _default_signals_in_child).
    rs = [capp.pool_sum.apply_async((10,), queue="c_pool") for _ in range(8)]
    assert [result(r, 60) for r in rs] == [sum(i * i for i in range(10))] * 8


def test_time_limits_under_threads_are_enforced(worker: Worker, capp: Any) -> None:
    q = "c_limits"
    assert result(capp.soft_limited.apply_async(queue=q), 20) == "soft limit caught"
    # Unstopped, the task would run 30 s and return normally: a TimeLimitExceeded within
    # the 20 s wait is the limit at work (how fast it fires is not this test's business).
    assert isinstance(result(capp.hard_limited.apply_async(queue=q), 20), TimeLimitExceeded)
    worker.wait_for("exceeded its hard time limit (0.8s)")

    def counted() -> None:
        m = worker.scrape()
        assert jobs(m, q, "gridq_celery_proj.soft_limited", "ok") == 1
        assert jobs(m, q, "gridq_celery_proj.hard_limited", "failed") == 1
        assert m[("gridq_jobs_in_flight", (("queue", q),))] == 0

    eventually(counted)
    # The thread was freed: the worker still runs tasks.
    assert result(capp.add.apply_async((1, 2), queue=q), 20) == 3
    assert "[time_limits]" in worker.text()  # the start-up line saying gridq enforces them


def test_startup_warnings_and_no_password_in_logs(worker: Worker) -> None:
    text = worker.text()
    assert "[reject_on_worker_lost]" in text and "acks_late without" in text
    assert "Celery instrumentation on (pool threads" in text
    assert "inst-1" in text  # --hostname = the instance id
    assert PASSWORD not in text


@pytest.mark.parametrize("wrapper", [True, False], ids=["wrapper", "install"])
def test_bad_visibility_timeout_refuses_to_start(
    broker: RedisServer, tmp_path: Path, wrapper: bool
) -> None:
    w = start_worker(
        broker.url,
        tmp_path,
        ["--pool", "threads"],
        env={"GRIDQ_TEST_VARIANT": "bad_vt", "GRIDQ_TEST_INSTALL": "0" if wrapper else "1"},
        metrics=False,
        wrapper=wrapper,
    )
    try:
        code = w.proc.wait(60)
    finally:
        w.stop()
    text = w.text()
    assert code == 3, text
    lines = [ln for ln in text.splitlines() if "[visibility_timeout]" in ln]
    assert len(lines) == 1 and lines[0].startswith("gridq: error:"), text
    assert "60 s" in lines[0] and "120 s" in lines[0] and "runs twice" in lines[0]
    assert PASSWORD not in text


def test_prefork_is_what_breaks_the_pool_task(
    broker: RedisServer, tmp_path: Path, capp: Any
) -> None:
    """The contrast: the same task under --pool prefork fails as mineru-api's did."""
    w = start_worker(
        broker.url, tmp_path, ["-Q", "c_prefork", "--pool", "prefork", "-c", "1"], metrics=False
    )
    try:
        w.wait_for("ready.")
        res = result(capp.pool_sum.apply_async((3,), queue="c_prefork"), 60)
        assert "daemonic processes are not allowed to have children" in str(res)
    finally:
        w.stop()
