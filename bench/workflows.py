"""What workflows cost (issue #15): a group of N no-op members and a chord of N
members, end to end, against the same N plain jobs, with one in-process worker.

    python bench/workflows.py [--members 5000] [--rounds 3]

Starts its own redis-server on a free port. Each round: N plain jobs (each with a
record, the default), a group of N (``get()`` returns the ordered list) and a chord of
N with a no-op callback; the clock runs from the first enqueue to the final result.
The worker starts before the clock, so start-up is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from results_cost import start_redis  # bench/ is sys.path[0] when run as a script

from gridq import chord, group
from gridq.queue import Queue
from gridq.worker import App
from gridq.worker.settings import WorkerSettings
from gridq.worker.worker import Worker


def run_with_worker(url: str, queue: str, body: Callable[[App], None]) -> float:
    app = App(input_url=url, input_queue=queue)

    @app.task
    def noop(i: int = 0) -> int:
        return i

    @app.task
    def count(results: list[Any]) -> int:
        return len(results)

    w = Worker(app, WorkerSettings(), install_signals=False)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    time.sleep(1.0)  # up and blocked on the queue
    t0 = time.perf_counter()
    body(app)
    took = time.perf_counter() - t0
    w._signals = 1
    t.join(30)
    Queue.from_url(url, queue).conn.flushdb()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--members", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    n = a.members

    def plain(app: App) -> None:
        hs = [app.tasks["noop"].delay(i) for i in range(n)]
        for h in hs:
            h.get(timeout=300)

    def grp(app: App) -> None:
        noop = app.tasks["noop"]
        assert group(noop.s(i) for i in range(n)).delay().get(timeout=300) == list(range(n))

    def chd(app: App) -> None:
        noop, count = app.tasks["noop"], app.tasks["count"]
        assert chord(group(noop.s(i) for i in range(n)), count.s()).delay().get(timeout=300) == n

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(Path(tmp))
        try:
            times: dict[str, list[float]] = {"plain jobs": [], "group": [], "chord": []}
            for r in range(a.rounds):
                for name, body in (("plain jobs", plain), ("group", grp), ("chord", chd)):
                    times[name].append(run_with_worker(url, f"wf-{r}-{name[0]}", body))
        finally:
            proc.kill()
            proc.wait()
    print(f"{n} no-op members, one worker (threads pool, default concurrency), local Redis\n")
    print("| shape | members | median s | members/s | rounds (s) |")
    print("|---|---:|---:|---:|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        runs = ", ".join(f"{t:.2f}" for t in ts)
        print(f"| {name} | {n} | {med:.2f} | {n / med:,.0f} | {runs} |")


if __name__ == "__main__":
    main()
