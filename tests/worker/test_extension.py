"""The worker's extension points, in-process against the real redis-server: per-job
middleware hooks in every in-process pool, and a replaced retry policy."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from gridq.protocol import Job
from gridq.queue import Queue
from gridq.worker import App, Middleware
from gridq.worker.app import Task, load_app
from gridq.worker.results import Outcome
from gridq.worker.retries import Decision, Retries
from gridq.worker.worker import Worker
from tests.worker.conftest import Running, settings

Q = "xq"


class Recorder(Middleware):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.threads: dict[str, str] = {}
        self._lock = threading.Lock()

    def before_job(self, job: Job, task: str) -> None:
        with self._lock:
            self.events.append(("before", task, job.id))
            self.threads[job.id] = threading.current_thread().name

    def after_job(self, job: Job, task: str, outcome: Outcome) -> None:
        with self._lock:
            self.events.append((f"after:{outcome.kind}", task, job.id))


APP_MODULE = """
from gridq.worker import App

app = App()


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(retries=0)
def boom() -> None:
    raise ValueError("no")
"""


@pytest.mark.parametrize("pool", ["threads", "solo", "asyncio", "processes"])
def test_before_and_after_job_wrap_every_run_not_a_dead_one(
    redis_conn: Any, redis_url: str, pool: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From a module, as `gridq worker` loads it: the processes pool's children import it.
    (tmp_path / "ext_app.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    app = load_app("ext_app:app")
    q = Queue(redis_conn, Q)
    ok, bad = q.enqueue("add", 1, 2), q.enqueue("boom")
    q.push_raw(b"raw, but the app has no default handler")
    rec = Recorder()
    s = settings(worker_pool=pool, input_url=redis_url, input_queue=Q)
    w = Worker(app, s, burst=True, middleware=[rec], install_signals=False)
    assert Running(w).join() == 0
    assert sorted(rec.events) == sorted(
        [
            ("before", "add", ok),
            ("after:ok", "add", ok),
            ("before", "boom", bad),
            ("after:error", "boom", bad),
        ]
    )
    # Before and after of one job in order; the hook ran where the handler did.
    assert rec.events.index(("before", "add", ok)) < rec.events.index(("after:ok", "add", ok))
    assert rec.threads[ok] != threading.main_thread().name
    assert len(Queue(redis_conn, Q).dead_letters()) == 2


class NoRetryForValueError(Retries):
    """The default policy, except that a ValueError is dead-lettered at once."""

    def decide(self, job: Job, task: Task[Any, Any] | None, outcome: Outcome) -> Decision:
        if outcome.error_type == "ValueError":
            return Decision(False, reason="ValueError: not worth a retry")
        return super().decide(job, task, outcome)


def test_retry_policy_is_replaceable(redis_conn: Any, redis_url: str) -> None:
    app = App(input_url=redis_url, input_queue=Q)
    calls: list[str] = []

    @app.task(retries=3, backoff=0.01)
    def fails(kind: str) -> None:
        calls.append(kind)
        raise ValueError("bad") if kind == "value" else KeyError("missing")

    value, key = fails.delay("value"), fails.delay("key")
    w = Worker(
        app,
        settings(worker_pool="solo"),
        burst=True,
        retry_policy=NoRetryForValueError(),
        install_signals=False,
    )
    assert Running(w).join() == 0
    dead = {d["id"]: d for d in Queue(redis_conn, Q).dead_letters()}
    assert dead[value]["reason"] == "ValueError: not worth a retry"
    assert dead[value]["attempts"] == 1
    assert dead[key]["attempts"] == 4 and "exhausted" in dead[key]["reason"]
    assert calls.count("value") == 1 and calls.count("key") == 4
