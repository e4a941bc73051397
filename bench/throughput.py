"""Worker throughput, side by side: gridq vs Celery, Dramatiq and RQ, in one run.

    python bench/throughput.py [--jobs 20000] [--skip celery,rq]   (or: gridq bench throughput)

Starts its own redis-server on a free port. For each framework: pre-load N no-op jobs,
start ONE worker process, and time the drain from the first job taken to the queue
being empty (start-up excluded for all alike). Then gridq's enqueue-to-start latency
at a steady 200 jobs/s, and the idle RSS of a gridq worker.

  gridq     1 process, threads pool, default concurrency (8), raw items
  celery    threads pool, concurrency 8, Redis broker
  dramatiq  1 process, 8 threads, Redis broker
  rq        SimpleWorker (no fork per job), --burst
  gridq-envelope / gridq-signed   the gridq row with envelopes (a named task), unsigned
            with no key, and signed (GRIDQ_SIGNING_KEY on both sides): the cost of
            verifying (skip both with --skip signed)
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
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import redis

from gridq import protocol, signing
from gridq.ports import free_port

SIGNING_KEY = "bench-signing-key-0123456789"

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

APPS = {
    "gridq_app.py": """
        import time
        from gridq.worker import App
        app = App()

        @app.default
        def noop(item):
            if item[:1] == b"t":  # latency probe: report enqueue-to-start
                return repr(time.time() - float(item[1:]))
            return None

        @app.task
        def nop():
            return None
    """,
    "celery_app.py": """
        import os
        from celery import Celery
        app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
        app.conf.worker_hijack_root_logger = False

        @app.task
        def noop():
            return None
    """,
    "dramatiq_app.py": """
        import os
        import dramatiq
        from dramatiq.brokers.redis import RedisBroker
        dramatiq.set_broker(RedisBroker(url=os.environ["BENCH_REDIS_URL"]))

        @dramatiq.actor(max_retries=0)
        def noop():
            return None
    """,
    "rq_app.py": """
        def noop():
            return None
    """,
}


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        binary = shutil.which("redis-server")
        if not binary:
            sys.exit("redis-server not found on PATH")
        self.redis_proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.r = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                self.r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        for name, src in APPS.items():
            (workdir / name).write_text(textwrap.dedent(src))
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)]),
            "BENCH_REDIS_URL": self.url,
            "INPUT_REDIS_URL": self.url,
        }

    def close(self) -> None:
        self.redis_proc.terminate()
        self.redis_proc.wait(5)

    def spawn(self, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            args,
            cwd=self.dir,
            env={**self.env, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def drain(
        self, key: str, n: int, proc: subprocess.Popen[bytes], done: Callable[[], bool]
    ) -> float:
        """Seconds from the first job taken to all ``n`` done."""
        deadline = time.monotonic() + 600
        while self.r.llen(key) >= n:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker for {key} exited early ({proc.returncode})")
            time.sleep(0.001)
        t0 = time.perf_counter()
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{key} did not drain")
            time.sleep(0.002)
        return time.perf_counter() - t0

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # --- frameworks -----------------------------------------------------------------

    def gridq(
        self, n: int, items: Callable[[int], bytes] = lambda j: b"x%d" % j, **env: str
    ) -> float:
        self.r.flushall()
        pipe = self.r.pipeline(transaction=False)
        for i in range(0, n, 1000):
            pipe.lpush("bench", *[items(j) for j in range(i, min(n, i + 1000))])
        pipe.execute()
        p = self.spawn(
            [str(VENV_BIN / "gridq"), "worker", "gridq_app:app"], INPUT_QUEUE="bench", **env
        )
        try:
            return self.drain(
                "bench",
                n,
                p,
                lambda: int(self.r.hget("gridq:q:{bench}:stats", "processed") or 0) >= n,
            )
        finally:
            self.stop(p)

    def gridq_envelope(self, n: int) -> float:
        return self.gridq(n, lambda j: protocol.encode("nop", job_id=str(j)))

    def gridq_signed(self, n: int) -> float:
        keys = [SIGNING_KEY.encode()]
        return self.gridq(
            n,
            lambda j: signing.sign_item(protocol.encode("nop", job_id=str(j)), keys),
            GRIDQ_SIGNING_KEY=SIGNING_KEY,
        )

    def celery(self, n: int) -> float:
        self.r.flushall()
        sys.path.insert(0, str(self.dir))
        os.environ["BENCH_REDIS_URL"] = self.url
        import celery_app  # type: ignore[import-not-found]

        for _ in range(n):
            celery_app.noop.delay()
        p = self.spawn(
            [str(VENV_BIN / "celery"), "-A", "celery_app", "worker", "-P", "threads", "-c", "8",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"]
        )  # fmt: skip
        try:
            # Celery prefetches (4 x 8): the tail after the list empties is < 0.2 % of n.
            return self.drain(
                "celery", n, p, lambda: self.r.llen("celery") == 0 and not self.r.hlen("unacked")
            )
        finally:
            self.stop(p)

    def dramatiq(self, n: int) -> float:
        self.r.flushall()
        sys.path.insert(0, str(self.dir))
        os.environ["BENCH_REDIS_URL"] = self.url
        import dramatiq_app  # type: ignore[import-not-found]

        for _ in range(n):
            dramatiq_app.noop.send()
        p = self.spawn(
            [str(VENV_BIN / "dramatiq"), "dramatiq_app", "--processes", "1", "--threads", "8"]
        )
        try:
            return self.drain(
                "dramatiq:default",
                n,
                p,
                lambda: (
                    self.r.llen("dramatiq:default") == 0
                    and self.r.hlen("dramatiq:default.msgs") == 0
                ),
            )
        finally:
            self.stop(p)

    def rq(self, n: int) -> float:
        self.r.flushall()
        sys.path.insert(0, str(self.dir))
        import rq
        import rq_app  # type: ignore[import-not-found]

        q = rq.Queue("default", connection=self.r)
        for _ in range(n):
            q.enqueue(rq_app.noop)
        p = self.spawn(
            [
                str(VENV_BIN / "rq"),
                "worker",
                "--burst",
                "-w",
                "rq.worker.SimpleWorker",
                "--url",
                self.url,
            ]
        )
        try:
            return self.drain("rq:queue:default", n, p, lambda: p.poll() is not None)
        finally:
            self.stop(p)

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=20000, help="jobs per framework (RQ: a quarter)")
    ap.add_argument("--skip", default="", help="comma-separated: celery,dramatiq,rq,latency,rss")
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    n = args.jobs
    with tempfile.TemporaryDirectory(prefix="gridq-bench-") as tmp:
        b = Bench(Path(tmp))
        try:
            rows: list[tuple[str, int, float]] = []
            for name in ("gridq", "celery", "dramatiq", "rq", "gridq-envelope", "gridq-signed"):
                if name in skip or (name.startswith("gridq-") and "signed" in skip):
                    continue
                count = n if name != "rq" else max(1000, n // 4)
                secs = getattr(b, name.replace("-", "_"))(count)
                rows.append((name, count, count / secs))
                print(f"  {name}: {count} jobs in {secs:.2f} s", file=sys.stderr)
            base = rows[0][2] if rows and rows[0][0] == "gridq" else None
            print(
                f"\nNo-op jobs, one worker process, {os.cpu_count()} CPU(s), redis-server local\n"
            )
            print("| framework | jobs | jobs/s | gridq is |")
            print("|---|---:|---:|---:|")
            for name, count, rate in rows:
                ratio = f"{base / rate:.1f}x" if base and not name.startswith("gridq") else "-"
                print(f"| {name} | {count} | {rate:,.0f} | {ratio} |")
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
