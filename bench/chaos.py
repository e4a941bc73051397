"""Chaos bench: prove gridq's reliability promises with figures (issue 8).

Runs a real grid on this machine — redis-server (AOF, ``appendfsync everysec``), one
``gridq hub`` process and two ``gridq node --runtime process`` agents, each running
``gridq worker`` processes — and breaks it while jobs flow:

* **kills**: SIGKILL a random worker every ``--kill-every`` s, SIGKILL + restart the hub
  (``--hub-restarts`` times), SIGKILL one node agent and restart it, restart Redis
  (a clean SHUTDOWN, and with ``--redis-sigkill`` also a SIGKILL restart). Every job's
  result must arrive; duplicates are bounded by the jobs in flight at each kill.
* **partition**: Redis unreachable for ``--outage`` s mid-run; nothing lost, one log
  line per outage and process.
* **longjobs**: jobs running 3x the lease never run twice while their worker lives.
* **load**: N simulated nodes heartbeating (bench/heartbeats.py) while clients read
  ``GET /api/tasks``; p50/p99 of both.

    gridq bench chaos                         # long form: 50,000 jobs, everything
    gridq bench chaos --jobs 3000 --hub-restarts 1 --no-redis-sigkill   # the CI form
    gridq bench chaos --scenario load --nodes 500 --interval 5

The same functions back the CI suite in tests/chaos/ (short parameters).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.chaos_grid import Grid, Producer, create_worker_task, write_app
from bench.chaos_grid import marker as marker  # re-exported for tests/chaos
from tests.support import RedisServer, redis_server_binary, wait_for
from tests.support.stack import GRIDQ

# -- kills ---------------------------------------------------------------------------------


@dataclass
class KillReport:
    jobs: int = 0
    worker_kills: int = 0
    hub_restarts: int = 0
    node_kills: int = 0
    redis_restarts: int = 0
    redis_sigkills: int = 0
    results: int = 0
    unique: int = 0
    duplicates: int = 0
    dup_bound: int = 0
    runs: int = 0
    lost_gridq: int = 0
    lost_fsync: int = 0
    dead: int = 0
    leftover: int = 0
    wall_s: float = 0.0
    drain_s: float = 0.0
    events: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [
            ("jobs", self.jobs),
            ("worker SIGKILLs", self.worker_kills),
            ("hub SIGKILL+restarts", self.hub_restarts),
            ("node agent SIGKILL+restarts", self.node_kills),
            ("Redis restarts (clean SHUTDOWN)", self.redis_restarts - self.redis_sigkills),
            ("Redis restarts (SIGKILL)", self.redis_sigkills),
            ("results received", self.results),
            ("handler runs (side effect)", self.runs),
            ("duplicates", self.duplicates),
            ("duplicate bound (in flight at kills)", self.dup_bound),
            ("lost by gridq (must be 0)", self.lost_gridq),
            ("lost to Redis's fsync window", self.lost_fsync),
            ("dead letters", self.dead),
            ("wall time (s)", f"{self.wall_s:.1f}"),
            ("drain after last push (s)", f"{self.drain_s:.1f}"),
        ]
        w = max(len(k) for k, _ in rows)
        lines = [f"| {'figure':<{w}} | value |", f"|{'-' * (w + 2)}|-------|"]
        lines += [f"| {k:<{w}} | {v} |" for k, v in rows]
        return "\n".join(lines)


def _inflight_total(r: redis.Redis, queue: str) -> int:
    return sum(int(r.llen(k)) for k in r.scan_iter(f"gridq:q:{{{queue}}}:inflight:*", count=1000))


def run_kills(
    tmp: Path,
    *,
    jobs: int = 3000,
    rate: float = 120.0,
    kill_every: float = 2.0,
    min_worker_kills: int = 0,
    hub_restarts: int = 1,
    node_kill: bool = True,
    redis_restart: bool = True,
    redis_sigkill: bool = False,
    lease: float = 2.0,
    concurrency: int = 4,
    prefetch: int = 4,
    sleep: float = 0.02,
    drain_timeout: float = 120.0,
    seed: int = 8,
    runtime: str = "process",
    out: Any = print,
) -> KillReport:
    """4 workers on 2 nodes (process or docker runtime); chaos while ``jobs`` flow."""
    rnd = random.Random(seed)
    grid = Grid(tmp, runtime=runtime)
    rep = KillReport(jobs=jobs)
    queue = "chaos-in"
    try:
        if runtime == "docker":
            grid.build_image()
        grid.start_redis()
        grid.start_hub()
        for _ in range(2):
            grid.add_agent(parallelism=2)
        create_worker_task(
            grid,
            "chaos",
            4,
            lease=lease,
            concurrency=concurrency,
            prefetch=prefetch,
            sleep=sleep,
        )
        wait_for(lambda: len(grid.worker_records()) == 4, 60)
        r = grid.conn()
        t0 = time.monotonic()
        prod = Producer(grid, queue, jobs, rate)
        prod.start()
        push_s = jobs / rate
        # The schedule, in seconds after the first push: spread over the pushing time.
        plan: list[tuple[float, str]] = []
        for k in range(hub_restarts):
            plan.append((push_s * (0.2 + 0.5 * k / max(1, hub_restarts)), "hub"))
        if node_kill:
            plan.append((push_s * 0.35, "node-kill"))
            plan.append((push_s * 0.35 + 3.0, "node-start"))
        if redis_restart:
            plan.append((push_s * 0.55, "redis"))
        if redis_sigkill:
            plan.append((push_s * 0.8, "redis-kill"))
        plan.sort()
        next_kill = kill_every
        fsync_windows: list[float] = []

        def note(msg: str) -> None:
            rep.events.append(f"{time.monotonic() - t0:7.1f}s {msg}")

        # Keep killing past the last push until ``min_worker_kills`` (a loaded machine
        # pushes slower or restarts workers slower), bounded so a broken grid cannot hang.
        kill_deadline = t0 + push_s + 30 * kill_every
        while not prod.done.is_set() or (
            rep.worker_kills < min_worker_kills and time.monotonic() < kill_deadline
        ):
            now = time.monotonic() - t0
            if plan and now >= plan[0][0]:
                _, what = plan.pop(0)
                if what == "hub":
                    grid.kill_hub()
                    note("hub SIGKILL")
                    time.sleep(1.0)
                    grid.start_hub()
                    rep.hub_restarts += 1
                    note("hub restarted")
                elif what == "node-kill":
                    grid.kill_agent(1)
                    rep.node_kills += 1
                    note("node 1 agent SIGKILL")
                elif what == "node-start":
                    grid.restart_agent(1)
                    note("node 1 agent restarted")
                elif what in ("redis", "redis-kill"):
                    with contextlib.suppress(redis.RedisError):
                        rep.dup_bound += _inflight_total(r, queue)
                    kill = what == "redis-kill"
                    grid.stop_redis(kill=kill)
                    down = time.time()
                    if kill:
                        fsync_windows.append(down)
                        rep.redis_sigkills += 1
                    note(f"Redis {'SIGKILL' if kill else 'SHUTDOWN'}")
                    time.sleep(1.0)
                    grid.start_redis_again()
                    rep.redis_restarts += 1
                    note("Redis restarted")
            if now >= next_kill:
                next_kill = now + kill_every
                recs = grid.worker_records()
                if recs:
                    victim = rnd.choice(recs)
                    with contextlib.suppress(redis.RedisError):
                        # Its claimed jobs (running, prefetched, finished-unacked) may rerun.
                        rep.dup_bound += int(
                            r.llen(f"gridq:q:{{{queue}}}:inflight:{victim['instance_id']}")
                        )
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(victim["pid"]), signal.SIGKILL)
                        rep.worker_kills += 1
            time.sleep(0.05)
        pushed_at = time.monotonic()
        note(f"all {jobs} pushed ({prod.retries} push retries)")
        out_q = "chaos-out"

        def drained() -> bool:
            try:
                return len(set(r.lrange(out_q, 0, -1))) >= len(prod.confirmed)
            except redis.RedisError:
                return False

        with contextlib.suppress(AssertionError):
            wait_for(drained, drain_timeout, interval=0.5)
        rep.drain_s = time.monotonic() - pushed_at
        rep.wall_s = time.monotonic() - t0
        results = r.lrange(out_q, 0, -1)
        counts = Counter(results)
        rep.results = len(results)
        rep.unique = len(counts)
        rep.duplicates = rep.results - rep.unique
        rep.runs = sum(int(v) for v in r.hvals("chaos:runs"))
        rep.dead = int(r.llen(f"gridq:q:{{{queue}}}:dead"))
        rep.leftover = int(r.llen(queue)) + _inflight_total(r, queue)
        for job, at in prod.confirmed.items():
            if job in counts:
                continue
            if any(w - 2.5 <= at <= w for w in fsync_windows):
                rep.lost_fsync += 1
            else:
                rep.lost_gridq += 1
        out(rep.table())
        for e in rep.events:
            out("  " + e)
        return rep
    finally:
        grid.close()


# -- partition -----------------------------------------------------------------------------


@dataclass
class PartitionReport:
    jobs: int = 0
    outage_s: float = 0.0
    lost: int = 0
    duplicates: int = 0
    dead: int = 0
    worker_down_lines: dict[str, int] = field(default_factory=dict)
    worker_up_lines: dict[str, int] = field(default_factory=dict)
    node_down_lines: list[int] = field(default_factory=list)
    node_up_lines: list[int] = field(default_factory=list)
    hub_down_lines: int = 0
    hub_up_lines: int = 0
    # Worker instances (instance id -> pid) just before the outage and once drained: the
    # same processes must still be the ones running.
    instances_before: dict[str, int] = field(default_factory=dict)
    instances_after: dict[str, int] = field(default_factory=dict)
    # Node log lines from the outage on: a worker stopped or started by the node.
    node_stops: int = 0
    node_starts: int = 0
    restarts: int = 0  # instances before the outage that no longer run
    wall_s: float = 0.0


WORKER_DOWN = "Redis trouble:"
WORKER_UP = "Redis is reachable again"
NODE_DOWN = "retrying with backoff, workers keep running"
NODE_UP = "hub reachable again"
HUB_DOWN = "hub Redis unreachable:"
HUB_UP = "hub Redis reachable again"


def _instances(grid: Grid) -> dict[str, int]:
    return {str(x["instance_id"]): int(x["pid"]) for x in grid.worker_records()}


def run_partition(
    tmp: Path,
    *,
    jobs: int = 1500,
    rate: float = 100.0,
    outage: float = 8.0,
    lease: float = 2.0,
    out: Any = print,
) -> PartitionReport:
    """Redis unreachable for ``outage`` s mid-run (stop, restart on the same port)."""
    grid = Grid(tmp)
    rep = PartitionReport(jobs=jobs, outage_s=outage)
    queue = "chaos-in"
    try:
        grid.start_redis()
        grid.start_hub()
        grid.add_agent(parallelism=2)
        create_worker_task(grid, "chaos", 2, lease=lease)
        wait_for(lambda: len(grid.worker_records()) == 2, 60)
        r = grid.conn()
        t0 = time.monotonic()
        prod = Producer(grid, queue, jobs, rate)
        prod.start()
        time.sleep(jobs / rate * 0.4)
        rep.instances_before = _instances(grid)
        node_log_at_outage = len(grid.agents[0].log_path.read_bytes())
        grid.stop_redis()
        time.sleep(outage)
        grid.start_redis_again()
        prod.join(jobs / rate + outage + 60)
        wait_for(lambda: len(set(r.lrange("chaos-out", 0, -1))) >= len(prod.confirmed), 90, 0.5)
        # Until the node has heartbeated again (its "back" line), plus a few intervals: a
        # node that wrongly lost its assignments would stop and replace its workers now.
        wait_for(lambda: NODE_UP in grid.agents[0].log_path.read_text(errors="replace"), 60, 0.2)
        time.sleep(6 * grid.node_interval + 1)
        rep.wall_s = time.monotonic() - t0
        rep.instances_after = _instances(grid)
        since = grid.agents[0].log_path.read_bytes()[node_log_at_outage:].decode(errors="replace")
        rep.node_stops = since.count("INFO gridq.node: stopping ")
        rep.node_starts = since.count("INFO gridq.node: started ")
        hub_log = (tmp / "hub.log").read_text(errors="replace")
        rep.hub_down_lines, rep.hub_up_lines = hub_log.count(HUB_DOWN), hub_log.count(HUB_UP)
        results = r.lrange("chaos-out", 0, -1)
        rep.lost = len(set(prod.confirmed) - set(results))
        rep.duplicates = len(results) - len(set(results))
        rep.dead = int(r.llen(f"gridq:q:{{{queue}}}:dead"))
        rep.restarts = len(set(rep.instances_before.items()) - set(rep.instances_after.items()))
        for name, text in grid.worker_logs().items():
            rep.worker_down_lines[name] = text.count(WORKER_DOWN)
            rep.worker_up_lines[name] = text.count(WORKER_UP)
        node_log = grid.agents[0].log_path.read_text(errors="replace")
        rep.node_down_lines.append(node_log.count(NODE_DOWN))
        rep.node_up_lines.append(node_log.count(NODE_UP))
        out(
            f"partition: {jobs} jobs, Redis down {outage:.0f} s: lost {rep.lost}, "
            f"duplicates {rep.duplicates}, dead {rep.dead}, workers restarted {rep.restarts} "
            f"(instances before {rep.instances_before}, after {rep.instances_after}; node "
            f"stopped {rep.node_stops}, started {rep.node_starts}), "
            f"worker outage lines {rep.worker_down_lines} / back {rep.worker_up_lines}, "
            f"node outage lines {rep.node_down_lines} / back {rep.node_up_lines}, "
            f"hub outage lines {rep.hub_down_lines} / back {rep.hub_up_lines}, "
            f"wall {rep.wall_s:.1f} s"
        )
        return rep
    finally:
        grid.close()


# -- long jobs -----------------------------------------------------------------------------


def run_long_jobs(
    tmp: Path, *, jobs: int = 8, lease: float = 1.0, factor: float = 3.0, out: Any = print
) -> dict[str, int]:
    """Two workers on one queue; each job sleeps ``factor`` x the lease. Returns runs per job."""
    srv_dir = tmp / "redis"
    srv_dir.mkdir(parents=True, exist_ok=True)
    binary = redis_server_binary()
    srv = RedisServer(binary, srv_dir)
    srv.start()
    write_app(tmp)
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
        env.update(
            PYTHONPATH=str(tmp),
            INPUT_REDIS_URL=srv.url,
            INPUT_QUEUE="long-in",
            OUTPUT_QUEUE="long-out",
            GRIDQ_WORKER_LEASE_SECONDS=str(lease),
            CHAOS_SLEEP=str(lease * factor),
        )
        r = srv.client()
        for i in range(2):
            logs.append(open(tmp / f"w{i}.log", "wb"))  # noqa: SIM115
            procs.append(
                subprocess.Popen(
                    [GRIDQ, "worker", "chaos_app:app", "--concurrency", "4", "--prefetch", "0"],
                    env={**env, "INSTANCE_ID": f"long-{i}"},
                    cwd=tmp,
                    stdout=logs[-1],
                    stderr=logs[-1],
                )
            )
        wait_for(lambda: r.zcard("gridq:q:{long-in}:consumers") == 2, 30)
        r.lpush("long-in", *[f"long-{i}".encode() for i in range(jobs)])
        wait_for(lambda: r.llen("long-out") >= jobs, 60 + jobs * lease * factor, 0.2)
        time.sleep(lease * 2)  # a late duplicate would show here
        runs = {k.decode(): int(v) for k, v in r.hgetall("chaos:runs").items()}
        alive = all(p.poll() is None for p in procs)
        out(
            f"long jobs: {jobs} jobs of {lease * factor:.0f} s with a {lease:.0f} s lease: "
            f"runs {sorted(Counter(runs.values()).items())}, results {r.llen('long-out')}, "
            f"workers alive {alive}"
        )
        return runs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
        srv.stop()


# -- load ----------------------------------------------------------------------------------


@dataclass
class LoadReport:
    nodes: int
    interval: float
    duration: float
    heartbeats: int  # sent inside the window (bench/heartbeats.py counts them so)
    heartbeats_per_s: float
    hb_errors: int
    hb_p50_ms: float
    hb_p99_ms: float
    reads: int
    read_errors: int
    read_p50_ms: float
    read_p99_ms: float

    def table(self) -> str:
        return (
            "| nodes | interval s | heartbeats/s | hb errors | hb p50 ms | hb p99 ms "
            "| GET /api/tasks | read p50 ms | read p99 ms |\n|---|---|---|---|---|---|---|---|---|\n"
            f"| {self.nodes} | {self.interval:g} | {self.heartbeats_per_s:.0f} | {self.hb_errors} "
            f"| {self.hb_p50_ms:.1f} | {self.hb_p99_ms:.1f} | {self.reads} ({self.read_errors} errors) "
            f"| {self.read_p50_ms:.1f} | {self.read_p99_ms:.1f} |"
        )


def run_load(
    tmp: Path,
    *,
    nodes: int = 200,
    interval: float = 2.0,
    duration: float = 10.0,
    readers: int = 2,
    read_every: float = 0.05,
    out: Any = print,
) -> LoadReport:
    # Imported here: bench/heartbeats.py sets its tokens in the environment on import.
    from bench import heartbeats as hb

    grid = Grid(tmp, aof=False, hub_interval=interval, hub_log_level="warning")
    grid.admin_token, grid.node_token = hb.ADMIN, hb.JOIN
    try:
        grid.start_redis()
        hub = grid.start_hub()
        for t in range(3):
            r = hub.http.post(
                "/api/tasks?validate=false",
                json={
                    "name": f"load-{t}",
                    "image": f"example/load-{t}:1",
                    "input_redis": grid.redis_url,
                    "input_queue": f"load-{t}",
                    "replicas": nodes,
                },
            )
            r.raise_for_status()
        creds = hb.register_all(hub.url, nodes)
        lat: list[float] = []
        errors = [0]
        stop = threading.Event()

        def reader() -> None:
            with httpx.Client(
                base_url=hub.url,
                headers={"Authorization": f"Bearer {grid.admin_token}"},
                timeout=10,
            ) as c:
                while not stop.is_set():
                    s = time.perf_counter()
                    try:
                        ok = c.get("/api/tasks").status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    lat.append(time.perf_counter() - s)
                    if not ok:
                        errors[0] += 1
                    time.sleep(read_every)

        # Fork the load generators first (run_load forks, then blocks), readers after.
        threads = [threading.Thread(target=reader, daemon=True) for _ in range(readers)]

        def start_readers() -> None:
            for th in threads:
                th.start()

        timer = threading.Timer(2.0, start_readers)
        timer.start()
        res = hb.run_load(hub.url, creds, interval, duration, 2)
        stop.set()
        timer.cancel()
        for th in threads:
            if th.is_alive():
                th.join(15)
        rep = LoadReport(
            nodes=nodes,
            interval=interval,
            duration=duration,
            heartbeats=res.sent,
            heartbeats_per_s=res.ok / res.elapsed,
            hb_errors=res.errors,
            hb_p50_ms=hb.pct(res.latencies, 50) * 1000,
            hb_p99_ms=hb.pct(res.latencies, 99) * 1000,
            reads=len(lat),
            read_errors=errors[0],
            read_p50_ms=hb.pct(lat, 50) * 1000,
            read_p99_ms=hb.pct(lat, 99) * 1000,
        )
        out(rep.table())
        return rep
    finally:
        grid.close()


# -- CLI -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="gridq bench chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--scenario",
        choices=["all", "kills", "partition", "longjobs", "load"],
        default="all",
    )
    ap.add_argument("--jobs", type=int, default=50_000)
    ap.add_argument("--rate", type=float, default=250.0, help="jobs pushed per second")
    ap.add_argument("--kill-every", type=float, default=2.0)
    ap.add_argument("--hub-restarts", type=int, default=2)
    ap.add_argument(
        "--redis-sigkill",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also SIGKILL Redis once (loss window of appendfsync everysec)",
    )
    ap.add_argument("--lease", type=float, default=2.0)
    ap.add_argument(
        "--runtime",
        choices=["process", "docker"],
        default="process",
        help="kills: the nodes' runtime (docker needs gridq-worker:test, scripts/build-test-images.sh)",
    )
    ap.add_argument("--outage", type=float, default=10.0, help="partition: seconds without Redis")
    ap.add_argument("--nodes", type=int, default=500, help="load: simulated nodes")
    ap.add_argument("--interval", type=float, default=5.0, help="load: heartbeat interval, s")
    ap.add_argument("--duration", type=float, default=30.0, help="load: measured seconds")
    ap.add_argument("--p99-ms", type=float, default=100.0, help="load: p99 budget")
    a = ap.parse_args(argv)
    failures: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="gridq-chaos-"))
    try:
        if a.scenario in ("all", "kills"):
            rep = run_kills(
                base / "kills",
                jobs=a.jobs,
                rate=a.rate,
                kill_every=a.kill_every,
                hub_restarts=a.hub_restarts,
                redis_sigkill=a.redis_sigkill,
                lease=a.lease,
                drain_timeout=max(120.0, a.jobs / 100),
                runtime=a.runtime,
            )
            if rep.lost_gridq:
                failures.append(f"kills: {rep.lost_gridq} jobs lost by gridq")
            if rep.dead:
                failures.append(f"kills: {rep.dead} dead letters")
            if rep.duplicates > rep.dup_bound:
                failures.append(f"kills: {rep.duplicates} duplicates > bound {rep.dup_bound}")
        if a.scenario in ("all", "partition"):
            prep = run_partition(
                base / "partition", outage=a.outage, lease=a.lease, jobs=3000, rate=100
            )
            if prep.lost or prep.dead:
                failures.append(f"partition: lost {prep.lost}, dead {prep.dead}")
            if prep.instances_after != prep.instances_before:
                failures.append(f"partition: {prep.restarts} worker(s) replaced, not ridden out")
        if a.scenario in ("all", "longjobs"):
            runs = run_long_jobs(base / "long", jobs=8, lease=a.lease)
            if any(v != 1 for v in runs.values()) or len(runs) != 8:
                failures.append(f"long jobs ran twice: {runs}")
        if a.scenario in ("all", "load"):
            lrep = run_load(base / "load", nodes=a.nodes, interval=a.interval, duration=a.duration)
            worst = max(lrep.hb_p99_ms, lrep.read_p99_ms)
            if worst >= a.p99_ms:
                failures.append(f"load: p99 {worst:.1f} ms >= {a.p99_ms:g} ms")
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
