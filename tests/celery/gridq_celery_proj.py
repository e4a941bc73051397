"""A Celery app as a user writes it, for the tests and the benchmark.

GRIDQ_TEST_VARIANT picks a configuration: "" (the tests' main worker: acks_late
without reject_on_worker_lost), "bad_vt" (a visibility timeout shorter than a hard
time limit, with acks_late), "bench" (early acks, as Celery's default).
GRIDQ_TEST_INSTALL=1 calls install(app) here: the documented in-code path.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

VARIANT = os.environ.get("GRIDQ_TEST_VARIANT", "")

app = Celery("gridq_celery_proj")
app.conf.update(
    # The broker comes from the environment (CELERY_BROKER_URL or, through the gridq
    # wrapper, INPUT_REDIS_URL); results go to the same Redis so tests can wait on them.
    result_backend=os.environ.get("TEST_RESULT_BACKEND") or None,
    task_acks_late=VARIANT in ("", "bad_vt"),
    broker_transport_options={"priority_steps": list(range(10))},
    worker_hijack_root_logger=True,
    broker_connection_retry_on_startup=True,
)
if VARIANT == "bench":
    app.conf.task_ignore_result = True
if VARIANT == "bad_vt":
    app.conf.broker_transport_options = {"visibility_timeout": 60}
    app.conf.task_time_limit = 120

if os.environ.get("GRIDQ_TEST_INSTALL") == "1":
    from gridq.worker.celery import install

    install(app)


@app.task
def noop() -> None:
    return None


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def boom(msg: str) -> None:
    raise ValueError(msg)


@app.task(bind=True, max_retries=5)
def flaky(self, tries: int) -> int:  # type: ignore[no-untyped-def]
    # Fails (and retries after 1 s) until it has been retried `tries` times. Not
    # countdown=0: Celery publishes the retry before it stores the RETRY state, so with
    # several threads the next attempt can succeed first and RETRY then overwrites
    # SUCCESS in the result backend (seen here under load: state RETRY for good).
    if self.request.retries < tries:
        raise self.retry(countdown=1)
    return int(self.request.retries)


def _square(n: int) -> int:
    return n * n


@app.task
def pool_sum(n: int) -> int:
    # Under Celery's prefork pool this raises "daemonic processes are not allowed to
    # have children"; under the threads pool it works.
    with multiprocessing.Pool(2) as pool:
        return sum(pool.map(_square, range(n)))


@app.task(soft_time_limit=0.5, time_limit=5)
def soft_limited() -> str:
    try:
        while True:
            time.sleep(0.02)
    except SoftTimeLimitExceeded:
        return "soft limit caught"


@app.task(soft_time_limit=0.3, time_limit=0.8)
def hard_limited() -> str:
    # Ignores the soft limit, so only the hard one can stop it.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            while time.monotonic() < deadline:
                time.sleep(0.02)
        except SoftTimeLimitExceeded:
            continue
    return "ran to the end"


@app.task
def bench_mark(key: str) -> None:
    # The benchmark's clock: the first and the last task of a run write their time.
    import redis

    redis.Redis.from_url(app.conf.broker_url).set(key, repr(time.time()))
