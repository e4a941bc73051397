"""Capacity on paper, from measured figures (docs/scaling.md).

    python bench/capacity.py                 # all parts, a few minutes
    python bench/capacity.py --parts cpu,wait --jobs 20000

Parts (each starts its own Debian ``redis-server`` processes on free ports):

* ``cpu``: Redis server CPU time per job (INFO cpu, used_cpu_user + used_cpu_sys
  deltas) for enqueue + claim + settle, driven through gridq's own code paths
  (``Queue.push_items``, ``Broker.claim``, ``Broker.settle``) at the worker's batch
  sizes, with and without a result per job. 1 / (CPU per job) is the ceiling of one
  Redis core (one shard).
* ``wait``: the same loop against a master with one replica, with and without
  ``min_replicas=1`` (one WAIT per enqueue batch and per settle batch): jobs/s.
* ``cluster``: the same number of ``gridq worker`` processes draining three queues on
  one Redis, then on a 3-master cluster (3 replicas) with each queue on its own master.
* ``paper``: shards, workers and nodes for 1M jobs/s and 20,000 nodes, from the
  figures above and the hub's CPU per heartbeat (``--hub-cpu-ms``, from
  bench/heartbeats.py).

Run from the repository root (it borrows the test suite's server helpers).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from itertools import count
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gridq import protocol  # noqa: E402
from gridq.queue import Queue  # noqa: E402
from gridq.redisurl import client, key_slot  # noqa: E402
from gridq.worker.broker import Broker, Settlement, make_client  # noqa: E402
from tests.cluster.conftest import Cluster  # noqa: E402
from tests.conftest import RedisServer  # noqa: E402

# Claim batches of a worker: 1 (solo), 16 (threads pool: concurrency 8 + prefetch 8),
# 100 and 500 (MAX_BATCH: a busy settler drains up to this many outcomes at once).
BATCHES = (1, 16, 100, 500)


def redis_cpu(conn: redis.Redis) -> float:
    info = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _items(n: int, tag: str) -> list[bytes]:
    return [protocol.encode("noop", [i], {}, job_id=f"{tag}-{i}") for i in range(n)]


def job_loop(url: str, queue: str, jobs: int, batch: int, results: bool) -> dict[str, float]:
    """Enqueue, claim and settle ``jobs`` jobs in batches of ``batch`` through gridq's
    own calls; Redis CPU seconds per phase and wall-clock jobs/s of the whole loop."""
    q = Queue.from_url(url, queue)
    conn = make_client(url)
    b = Broker(conn, queue, f"bench-{queue}", output_queue=f"{queue}-out" if results else None)
    from gridq import durability

    b.min_replicas = durability.min_replicas(url)
    probe = client(url)
    items = _items(jobs, queue)
    cpu = {"enqueue": 0.0, "claim": 0.0, "settle": 0.0}
    t0 = time.perf_counter()
    done = 0
    while done < jobs:
        chunk = items[done : done + batch]
        c0 = redis_cpu(probe)
        q.push_items(chunk)
        c1 = redis_cpu(probe)
        got = b.claim(len(chunk)) or []
        c2 = redis_cpu(probe)
        s = Settlement(acks=list(got))
        if results:
            s.results = [b'{"result":null}'] * len(got)
        b.settle(s)
        c3 = redis_cpu(probe)
        cpu["enqueue"] += c1 - c0
        cpu["claim"] += c2 - c1
        cpu["settle"] += c3 - c2
        done += len(chunk)
    wall = time.perf_counter() - t0
    probe.delete(q.keys.stats, f"{queue}-out")
    # The INFO probes themselves cost Redis a little; measured and taken off below.
    return {**{k: v / jobs for k, v in cpu.items()}, "jobs_per_s": jobs / wall}


def info_cost(url: str, n: int = 2000) -> float:
    probe = client(url)
    c0 = redis_cpu(probe)
    for _ in range(n):
        redis_cpu(probe)
    return (redis_cpu(probe) - c0) / n


def part_cpu(server: str, workdir: Path, jobs: int) -> list[dict[str, Any]]:
    srv = RedisServer(server, workdir / "cpu")
    srv.workdir.mkdir(parents=True, exist_ok=True)
    srv.start()
    rows = []
    try:
        probe_cost = info_cost(srv.url)
        for batch in BATCHES:
            n = jobs if batch > 1 else max(2000, jobs // 10)
            for results in (False, True):
                r = job_loop(srv.url, f"cpu{batch}{'r' if results else ''}", n, batch, results)
                # Three INFO probes per batch of ``batch`` jobs, one between phases.
                per_phase_probe = probe_cost / batch
                us = {
                    k: max(0.0, r[k] - per_phase_probe) * 1e6
                    for k in ("enqueue", "claim", "settle")
                }
                total = sum(us.values())
                rows.append(
                    {
                        "batch": batch,
                        "results": "yes" if results else "no",
                        "enqueue_us": round(us["enqueue"], 2),
                        "claim_us": round(us["claim"], 2),
                        "settle_us": round(us["settle"], 2),
                        "total_us": round(total, 2),
                        "ceiling_jobs_s": int(1e6 / total) if total else None,
                    }
                )
    finally:
        srv.stop()
    return rows


def part_wait(server: str, workdir: Path, jobs: int) -> list[dict[str, Any]]:
    master = RedisServer(server, workdir / "m")
    replica = RedisServer(server, workdir / "r")
    for s in (master, replica):
        s.workdir.mkdir(parents=True, exist_ok=True)
    master.start()
    replica.start("--replicaof", "127.0.0.1", str(master.port))
    deadline = time.monotonic() + 30
    # Online, not just connected: WAIT counts only replicas past their first sync.
    while master.client().info("replication").get("slave0", {}).get("state") != "online":
        assert time.monotonic() < deadline, "the replica did not come online"
        time.sleep(0.1)
    rows = []
    try:
        for batch in (1, 16, 100):
            n = jobs if batch > 1 else max(2000, jobs // 10)
            for wait in (0, 1):
                url = master.url + (f"?min_replicas={wait}" if wait else "")
                r = job_loop(url, f"w{batch}{wait}", n, batch, results=True)
                rows.append({"batch": batch, "min_replicas": wait, "jobs_s": int(r["jobs_per_s"])})
    finally:
        replica.stop()
        master.stop()
    return rows


WORKER_APP = """
from gridq.worker import App
app = App()

@app.default
def noop(item):
    return None
"""


def drain(urls: list[str], queues: list[str], per_queue: int, workers: int, tmp: Path) -> float:
    """Pre-load the queues, start ``workers`` gridq worker processes (spread over the
    queues) and time from the first processed job to the last; jobs/s."""
    (tmp / "capapp.py").write_text(textwrap.dedent(WORKER_APP))
    for url, q in zip(urls, queues, strict=True):
        producer = Queue.from_url(url, q)
        items = [f"{q}-{i}".encode() for i in range(per_queue)]  # raw items: @app.default
        for i in range(0, per_queue, 1000):
            producer.push_items(items[i : i + 1000])
    procs = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
    for w in range(workers):
        url, q = urls[w % len(queues)], queues[w % len(queues)]
        procs.append(
            subprocess.Popen(
                [str(Path(sys.executable).parent / "gridq"), "worker", "capapp:app", "--burst",
                 "--log-level", "warning"],
                cwd=tmp, env={**env, "INPUT_REDIS_URL": url, "INPUT_QUEUE": q,
                              "PYTHONPATH": str(tmp)},
            )
        )  # fmt: skip
    stats = [Queue.from_url(u, q) for u, q in zip(urls, queues, strict=True)]
    total = per_queue * len(queues)
    start = None
    deadline = time.monotonic() + 600
    while True:
        assert time.monotonic() < deadline, "the workers did not drain the queues"
        done = sum(int(s.stats()["processed"] or 0) for s in stats)
        if start is None and done:
            start, first = time.perf_counter(), done
        if done >= total:
            break
        time.sleep(0.02)
    took = time.perf_counter() - (start or time.perf_counter())
    for p in procs:
        p.wait(60)
    return (total - first) / took if took else 0.0


def part_cluster(server: str, workdir: Path, jobs: int, workers: int) -> list[dict[str, Any]]:
    per = jobs // 3
    rows = []
    one = RedisServer(server, workdir / "one")
    one.workdir.mkdir(parents=True, exist_ok=True)
    one.start()
    try:
        rate = drain([one.url] * 3, ["s0", "s1", "s2"], per, workers, workdir)
        rows.append({"redis": "1 server", "workers": workers, "jobs": per * 3, "jobs_s": int(rate)})
    finally:
        one.stop()
    cli = shutil.which("redis-cli")
    assert cli, "redis-cli is needed for the cluster part"
    (workdir / "cl").mkdir()
    c = Cluster(workdir / "cl")
    c.start(server, cli)
    try:
        rc = c.client()
        masters: dict[str, str] = {}
        for i in count():
            node = rc.get_node_from_key(f"c{i}")
            masters.setdefault(str(node.name), f"c{i}")
            if len(masters) == 3:
                break
        queues = sorted(masters.values())
        assert len({key_slot(q) for q in queues}) == 3
        rate = drain([c.url] * 3, queues, per, workers, workdir)
        rows.append(
            {
                "redis": "cluster, 3 masters",
                "workers": workers,
                "jobs": per * 3,
                "jobs_s": int(rate),
            }
        )
    finally:
        c.stop()
    return rows


def part_paper(cpu: list[dict[str, Any]], worker_rate: float | None, hub_cpu_ms: float,
               interval: float) -> dict[str, Any]:  # fmt: skip
    """1M jobs/s and 20,000 nodes, from the measured figures. Shards run at 70 % of
    their ceiling (headroom for replication, AOF and bursts)."""
    pick = next(r for r in cpu if r["batch"] == 16 and r["results"] == "yes")
    ceiling = pick["ceiling_jobs_s"]
    shards = math.ceil(1_000_000 / (0.7 * ceiling))
    out: dict[str, Any] = {
        "shard_ceiling_jobs_s (batch 16, results on)": ceiling,
        "shards_for_1M_jobs_s (70% load)": shards,
        "cluster_processes (1 replica each)": shards * 2,
    }
    if worker_rate:
        out["noop_jobs_s_per_worker_process"] = int(worker_rate)
        out["worker_processes_for_1M_noop_jobs_s"] = math.ceil(1_000_000 / worker_rate)
    hb_s = 20_000 / interval
    out[f"heartbeats_s (20,000 nodes, every {interval:g} s)"] = int(hb_s)
    out["hub_cores_for_20k_nodes"] = round(hb_s * hub_cpu_ms / 1000, 2)
    return out


def table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    head = list(rows[0])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(str(r[h]) for h in head) + " |")
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--parts", default="cpu,wait,cluster,paper")
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=3, help="worker processes in the cluster part")
    ap.add_argument(
        "--hub-cpu-ms",
        type=float,
        default=0.65,
        help="hub CPU ms per heartbeat (bench/heartbeats.py prints it)",
    )
    ap.add_argument("--interval", type=float, default=5.0, help="node heartbeat interval (s)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)  # fmt: skip
    server = shutil.which("redis-server")
    if not server:
        print("redis-server not found (apt-get install redis-server)", file=sys.stderr)
        return 2
    parts = set(args.parts.split(","))
    out: dict[str, Any] = {"cpu_count": os.cpu_count(), "loadavg": os.getloadavg()}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cpu: list[dict[str, Any]] = []
        if "cpu" in parts or "paper" in parts:
            cpu = part_cpu(server, tmp, args.jobs)
            out["cpu"] = cpu
            print("## Redis CPU per job (µs), enqueue + claim + settle\n")
            table(cpu)
        if "wait" in parts:
            out["wait"] = part_wait(server, tmp, args.jobs)
            print("## WAIT: master + 1 replica, results on\n")
            table(out["wait"])
        rate = None
        if "cluster" in parts:
            out["cluster"] = part_cluster(server, tmp, args.jobs * 3, args.workers)
            print("## Same workers, 1 Redis vs 3-master cluster (sanity check only)\n")
            table(out["cluster"])
            rate = out["cluster"][0]["jobs_s"] / args.workers
        if "paper" in parts:
            out["paper"] = part_paper(cpu, rate, args.hub_cpu_ms, args.interval)
            print("## On paper\n")
            for k, v in out["paper"].items():
                print(f"- {k}: {v}")
    print(f"\nmachine: {out['cpu_count']} cores, load average {out['loadavg']}")
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
