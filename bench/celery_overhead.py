"""What gridq's Celery instrumentation costs: "Celery app under gridq" beside "plain Celery".

The same Celery app drains the same N no-op tasks from a real Redis, threads pool,
concurrency 8: once started with ``celery -A ... worker`` (plain), once with
``python -m gridq.worker.celery -A ... worker`` (instrumented: metrics endpoint on,
queue counters flushed to Redis, checks run). Runs alternate (plain, gridq, plain,
gridq, ...) so drift on a shared machine hits both; the table shows the median.

    python bench/celery_overhead.py [--jobs 4000] [--rounds 3]

Throughput is timed inside the worker: the first task and a last task (queued
behind the N no-ops) write their start times to Redis, so process start-up and
connection set-up are not counted.
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

from gridq.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
PROJ_DIR = ROOT / "tests" / "celery"  # gridq_celery_proj: the app the tests use
QUEUE = "bench_celery"


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if not binary:
        sys.exit("redis-server not found on PATH")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


def fill(url: str, jobs: int) -> None:
    sys.path.insert(0, str(PROJ_DIR))
    os.environ["GRIDQ_TEST_VARIANT"] = "bench"
    import gridq_celery_proj as proj

    proj.app.conf.broker_url = url
    with proj.app.connection() as conn, conn.Producer() as prod:
        proj.app.send_task(
            "gridq_celery_proj.bench_mark", ("bench:start",), queue=QUEUE, producer=prod
        )
        for _ in range(jobs):
            proj.app.send_task("gridq_celery_proj.noop", queue=QUEUE, producer=prod)
        proj.app.send_task(
            "gridq_celery_proj.bench_mark", ("bench:end",), queue=QUEUE, producer=prod
        )


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
    try:
        deadline = time.monotonic() + 300
        while conn.get("bench:end") is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{mode} worker failed; see {workdir / (mode + '.log')}")
            time.sleep(0.1)
        start, end = float(conn.get("bench:start")), float(conn.get("bench:end"))
        if mode == "gridq":
            # The instrumentation counted every job (flushed within 0.5 s).
            time.sleep(1.0)
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
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gridq-celery-bench-"))
    rproc, url = start_redis(workdir)
    rates: dict[str, list[float]] = {"plain": [], "gridq": []}
    try:
        for _ in range(args.rounds):
            for mode in ("plain", "gridq"):
                rates[mode].append(run_once(mode, url, args.jobs, workdir))
    finally:
        rproc.terminate()
        rproc.wait(10)
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
