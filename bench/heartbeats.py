"""Hub heartbeat benchmark: how many heartbeats/s one hub process sustains, and at what latency.

Starts a real redis-server and ONE real hub process (`gridq hub`, uvicorn), registers
N simulated nodes, registers tasks so heartbeats carry real assignments, then runs
the nodes as asyncio coroutines (httpx) in a separate load-generator process, each
heartbeating every ``--interval`` seconds with its instance status. Prints a table.

    python -m bench.heartbeats                        # 1,000 nodes, 1 heartbeat/s each
    python -m bench.heartbeats --nodes 1000 --interval 0.5 --duration 20
    python -m bench.heartbeats --redis-url redis://127.0.0.1:6379/15 --hub-url http://127.0.0.1:8080

(from the repository root; or `gridq bench hub ...`). Every heartbeat sent inside the
measured window counts, whenever its answer comes: a timeout is an error, counted, with
its 30 s as latency. A node behind its schedule sends at once until it has caught up,
so the offered load stays nodes / interval however slow the hub gets.

With --hub-url the hub must already run with GRIDQ_HUB_TOKEN / GRIDQ_NODE_TOKEN equal
to GRIDQ_BENCH_ADMIN / GRIDQ_BENCH_JOIN in the benchmark's environment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx

from gridq.ports import free_port
from tests.support import RedisServer, redis_server_binary

# Fresh per run (the hub refuses guessable tokens); children get them via the environment.
ADMIN = os.environ.get("GRIDQ_BENCH_ADMIN") or secrets.token_urlsafe(24)
JOIN = os.environ.get("GRIDQ_BENCH_JOIN") or secrets.token_urlsafe(24)
os.environ["GRIDQ_BENCH_ADMIN"], os.environ["GRIDQ_BENCH_JOIN"] = ADMIN, JOIN


def info(i: int) -> dict[str, Any]:
    return {
        "hostname": f"sim-{i:05d}",
        "arch": "linux/amd64" if i % 4 else "linux/arm64",
        "cpus": 8,
        "memory_mb": 32000,
        "labels": {"zone": f"z{i % 3}"},
        "runtime": "docker",
        "parallelism": 4,
        "version": "bench",
    }


def instances(node_id: str, assignments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for a in assignments:
        for k in range(a["replicas"]):
            out.append(
                {
                    "instance_id": f"{node_id}-{a['task']}-{k}",
                    "task": a["task"],
                    "index": k,
                    "spec_hash": a["spec"]["spec_hash"],
                    "state": "running",
                    "metrics_url": f"http://10.0.0.1:{9100 + k}/metrics",
                }
            )
    return out


class Result(NamedTuple):
    """Every request sent inside the measured window, however and whenever it ended."""

    sent: int
    ok: int
    errors: int  # timeouts included
    timeouts: int
    elapsed: float
    latencies: list[float]  # one per request sent, timeouts at the time they gave up


async def _post(
    rd: asyncio.StreamReader, wr: asyncio.StreamWriter, head: bytes, body: bytes
) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive POST on an open connection. A minimal client: httpx costs
    more CPU per request than the hub does, and client and hub share this machine."""
    wr.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    await wr.drain()
    raw = await rd.readuntil(b"\r\n\r\n")
    lines = raw.split(b"\r\n")
    code = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return code, await rd.readexactly(length)


async def _run_nodes(
    hub: str, creds: list[tuple[str, str, int]], interval: float, duration: float, warmup: float
) -> Result:
    parts = urlsplit(hub)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lat: list[float] = []
    counts = {"sent": 0, "ok": 0, "err": 0, "timeout": 0}
    t0 = time.perf_counter()
    start_measure = t0 + warmup
    end = start_measure + duration

    async def node(node_id: str, secret: str, idx: int) -> None:
        head = (
            f"POST /api/node/{node_id}/heartbeat HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {secret}\r\nContent-Type: application/json\r\n"
        ).encode()
        payload: dict[str, Any] = {"info": info(idx), "instances": []}
        body = json.dumps(payload).encode()
        # Spread the nodes' phases over one interval, like real agents.
        await asyncio.sleep(interval * idx / total)
        rd, wr = await asyncio.open_connection(host, port)
        wr.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        first = True
        nxt = time.perf_counter()
        try:
            while time.perf_counter() < end:
                s = time.perf_counter()
                timed_out = False
                try:
                    code, resp = await asyncio.wait_for(_post(rd, wr, head, body), 30)
                    ok = code == 200
                except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                    ok, timed_out = False, isinstance(exc, TimeoutError)
                    wr.close()
                    rd, wr = await asyncio.open_connection(host, port)
                e = time.perf_counter()
                if ok and first:
                    # Report the instances the hub assigned, as a real node would.
                    payload["instances"] = instances(node_id, json.loads(resp)["assignments"])
                    body = json.dumps(payload).encode()
                    first = False
                # Counted by when it was sent: a slow answer or a timeout after the
                # window's end still belongs to the load the window offered.
                if s >= start_measure:
                    counts["sent"] += 1
                    lat.append(e - s)
                    counts["ok" if ok else "err"] += 1
                    counts["timeout"] += timed_out
                # Keep the schedule: behind it, send at once until caught up, so the
                # offered load stays nodes / interval even when the hub is slow.
                nxt += interval
                delay = nxt - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            wr.close()

    total = max(i for _, _, i in creds) + 1
    await asyncio.gather(*(node(n, s, i) for n, s, i in creds))
    return Result(counts["sent"], counts["ok"], counts["err"], counts["timeout"], duration, lat)


def _worker(args: tuple[str, list[tuple[str, str, int]], float, float, float], q: Any) -> None:
    # uvloop when installed (uvicorn[standard] brings it): the load generator shares the
    # machine's cores with the hub, so its own CPU per request matters too.
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    res = asyncio.run(_run_nodes(*args))
    q.put(tuple(res))  # plain data across the process boundary


def run_load(
    hub: str, creds: list[tuple[str, str, int]], interval: float, duration: float, procs: int
) -> Result:
    """Split the nodes over ``procs`` load-generator processes (the client is not the hub)."""
    # fork: a child starts with the parent's tokens and credentials, nothing to re-import.
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    chunks = [creds[i::procs] for i in range(procs)]
    ps = [ctx.Process(target=_worker, args=((hub, c, interval, duration, 2.0), q)) for c in chunks]
    for p in ps:
        p.start()
    results = [Result(*q.get()) for _ in ps]
    for p in ps:
        p.join()
    lat = [x for r in results for x in r.latencies]
    return Result(
        sum(r.sent for r in results),
        sum(r.ok for r in results),
        sum(r.errors for r in results),
        sum(r.timeouts for r in results),
        duration,
        lat,
    )


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def register_all(hub: str, n: int) -> list[tuple[str, str, int]]:
    async def go() -> list[tuple[str, str, int]]:
        sem = asyncio.Semaphore(32)
        async with httpx.AsyncClient(base_url=hub, timeout=60) as c:

            async def one(i: int) -> tuple[str, str, int]:
                async with sem:
                    r = await c.post(
                        "/api/node/register",
                        json={"info": info(i)},
                        headers={"Authorization": f"Bearer {JOIN}"},
                    )
                    r.raise_for_status()
                    return r.json()["node_id"], r.json()["secret"], i

            return list(await asyncio.gather(*(one(i) for i in range(n))))

    return asyncio.run(go())


def cpu_seconds(pid: int | None) -> float:
    """User+system CPU seconds of a process (Linux /proc), 0 if unknown."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def server_side(hub: str, admin: dict[str, str]) -> str:
    """p50/p99 bucket bounds of the hub's own heartbeat latency histogram."""
    text = httpx.get(f"{hub}/metrics", headers=admin, timeout=60).text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if (
            line.startswith("gridq_hub_request_duration_seconds_bucket{")
            and "heartbeat" in line
            and 'status="200"' in line
        ):
            le = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    if not buckets:
        return "n/a"
    total = buckets[float("inf")]
    out = []
    for p in (50, 99):
        bound = next(b for b in sorted(buckets) if buckets[b] >= total * p / 100)
        out.append(f"p{p} <= {bound * 1000:g} ms")
    return f"{int(total)} heartbeats, " + ", ".join(out)


def wait_up(url: str, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"hub at {url} did not come up")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument(
        "--interval", type=float, nargs="+", default=[1.0], help="heartbeat interval(s) per node, s"
    )
    ap.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--replicas", type=int, default=400, help="replicas per task")
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes")
    ap.add_argument("--redis-url", default=None, help="use this Redis (default: start one)")
    ap.add_argument("--hub-url", default=None, help="use a running hub (default: start one)")
    ap.add_argument("--json", action="store_true", help="print results as JSON too")
    a = ap.parse_args(argv)

    procs: list[subprocess.Popen[bytes]] = []
    server: RedisServer | None = None
    tmp = tempfile.mkdtemp(prefix="gridq-bench-")
    try:
        redis_url = a.redis_url
        if not redis_url:
            binary = redis_server_binary()
            if not binary:
                raise SystemExit("no redis-server (apt-get install redis-server, or --redis-url)")
            server = RedisServer(binary, Path(tmp))
            server.start()
            redis_url = server.url
        import redis as _redis

        _redis.Redis.from_url(redis_url).flushdb()
        hub = a.hub_url
        if not hub:
            hport = free_port()
            env = dict(
                os.environ,
                GRIDQ_HUB_TOKEN=ADMIN,
                GRIDQ_NODE_TOKEN=JOIN,
                GRIDQ_HUB_REDIS_URL=redis_url,
                GRIDQ_HUB_HEARTBEAT_INTERVAL=str(max(a.interval)),
                GRIDQ_HUB_LOG_LEVEL="warning",
            )
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "gridq.cli.main", "hub", "--bind", f"127.0.0.1:{hport}"],
                    env=env,
                )
            )
            hub = f"http://127.0.0.1:{hport}"
        wait_up(hub)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        for t in range(a.tasks):
            body = {
                "name": f"bench-{t}",
                "image": f"example/bench-{t}:1",
                "input_redis": redis_url,
                "input_queue": f"bench-{t}",
                "replicas": a.replicas,
            }
            httpx.post(
                f"{hub}/api/tasks?validate=false", json=body, headers=admin, timeout=30
            ).raise_for_status()
        t0 = time.perf_counter()
        creds = register_all(hub, a.nodes)
        reg_s = time.perf_counter() - t0
        print(
            f"registered {a.nodes} nodes in {reg_s:.1f} s; {a.tasks} tasks x {a.replicas} replicas",
            flush=True,
        )

        hub_pid = procs[-1].pid if not a.hub_url else None
        rows = []
        for interval in a.interval:
            cpu0 = cpu_seconds(hub_pid)
            r = run_load(hub, creds, interval, a.duration, a.procs)
            cpu1 = cpu_seconds(hub_pid)
            # Includes the 2 s warm-up: an upper bound on the hub's CPU per heartbeat.
            total = r.ok * (a.duration + 2.0) / a.duration
            cpu_ms = (cpu1 - cpu0) / total * 1000 if hub_pid and total else None
            rows.append(
                {
                    "nodes": a.nodes,
                    "interval_s": interval,
                    "offered_per_s": round(a.nodes / interval),
                    "sent_per_s": round(r.sent / r.elapsed),
                    "achieved_per_s": round(r.ok / r.elapsed),
                    "errors": r.errors,
                    "timeouts": r.timeouts,
                    "p50_ms": round(pct(r.latencies, 50) * 1000, 1),
                    "p99_ms": round(pct(r.latencies, 99) * 1000, 1),
                    "max_ms": round(max(r.latencies) * 1000, 1) if r.latencies else None,
                    "mean_ms": round(statistics.fmean(r.latencies) * 1000, 1)
                    if r.latencies
                    else None,
                    "hub_cpu_ms_per_hb": round(cpu_ms, 2) if cpu_ms else None,
                }
            )
        header = [
            "nodes",
            "interval_s",
            "offered_per_s",
            "sent_per_s",
            "achieved_per_s",
            "errors",
            "timeouts",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "hub_cpu_ms_per_hb",
        ]
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(str(row[h]) for h in header) + " |")
        if a.json:
            print(json.dumps(rows))
        print("\nhub-side heartbeat latency (from /metrics, whole run):", server_side(hub, admin))
        nodes_view = httpx.get(f"{hub}/api/nodes", headers=admin, timeout=60).json()
        online = sum(1 for n in nodes_view if n["status"] == "online")
        print(f"\nhub view: {online}/{len(nodes_view)} nodes online")
        return 0
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
