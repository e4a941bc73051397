"""``gridq up``: the whole grid on this machine; ``--demo`` runs the main job and exits."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
from typing import Any

import click

from gridq.cli.common import fail, friendly, state_dir

DEMO_TASK = "demo"
DEMO_QUEUE = "gridq-demo"
DEMO_RESULTS = "gridq-demo-results"
DEMO_STATE = "demo"  # sub-folder of the state folder


@click.command()
@click.option(
    "--demo",
    is_flag=True,
    help="Register the example task, push jobs, show throughput, stop and exit.",
)
@click.option("--jobs", default=20_000, show_default=True, help="How many jobs --demo pushes.")
@click.option("--replicas", default=2, show_default=True, help="Workers of the demo task.")
@click.option(
    "--runtime",
    type=click.Choice(["process", "docker"]),
    default="process",
    show_default=True,
    help="How the local node runs workers (docker needs an engine).",
)
@click.option("--hub-port", type=int, default=0, help="Hub port (default: a free one).")
@click.option("--redis-port", type=int, default=0, help="Redis port (default: a free one).")
@click.option(
    "--state-dir",
    "state_path",
    type=click.Path(file_okay=False),
    envvar="GRIDQ_STATE_DIR",
    help="Where Redis data, tokens and logs live; --demo uses its own demo/ sub-folder "
    "[env GRIDQ_STATE_DIR].",
)
@friendly
def up(
    demo: bool,
    jobs: int,
    replicas: int,
    runtime: str,
    hub_port: int,
    redis_port: int,
    state_path: str | None,
) -> None:
    """Run Redis, a hub and one node here, in the foreground; Ctrl+C stops them in order.

    \b
    Examples:
      gridq up --demo          # the five-minute tour: runs a demo task, prints a summary
      gridq up                 # a local grid; `gridq status` in another shell
    """
    from pathlib import Path

    from gridq.localstack import Stack

    state = Path(state_path) if state_path else state_dir()
    if demo:
        # Its own Redis, hub and node state: tasks left in the main stack's folder would
        # hold every slot and the demo would wait for workers that never start.
        state = state / DEMO_STATE
    if runtime == "docker":
        _require_docker()
    stack = Stack(state=state, runtime=runtime, hub_port=hub_port, redis_port=redis_port)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    click.echo("starting Redis, hub and node ...", err=True)
    try:
        stack.start()
        _banner(stack, demo)
        if demo:
            ok = _run_demo(stack, jobs, replicas, stopping)
            if not ok:
                sys.exit(1)
        else:
            while not stopping.wait(1.0):
                stack._check_alive()
    finally:
        click.echo("stopping node, hub and Redis ...", err=True)
        stack.stop()
        click.echo("stopped.", err=True)


def _require_docker() -> None:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        fail(
            "--runtime docker: no Docker engine answers here (start dockerd, or use --runtime process)"
        )


def _banner(stack: Any, demo: bool) -> None:
    click.echo(
        f"hub      {stack.hub_url}   (API docs {stack.hub_url}/docs, metrics {stack.hub_url}/metrics)"
    )
    click.echo(f"redis    {stack.redis_url}")
    click.echo(f"state    {stack.state}")
    if stack.new_tokens:
        click.echo(
            "tokens   generated now and kept (mode 0600) in " + str(stack.state / "tokens.json")
        )
    if not demo:
        click.echo("\nIn another shell:")
        click.echo(f"  export GRIDQ_HUB_URL={stack.hub_url}")
        # This interpreter, by path: a bare `python` may not exist (Debian has python3).
        tokens = str(stack.state / "tokens.json")
        read = f'import json;print(json.load(open({tokens!r}))["admin_token"])'
        click.echo(
            f"  export GRIDQ_HUB_TOKEN=$({shlex.quote(sys.executable)} -c {shlex.quote(read)})"
        )
        click.echo(f"  export GRIDQ_REDIS_URL={stack.redis_url}")
        click.echo("  gridq status")
        click.echo("\nCtrl+C stops everything.")


def _run_demo(stack: Any, jobs: int, replicas: int, stopping: threading.Event) -> bool:
    from rich.console import Console

    from gridq.queue import Queue

    console = Console(stderr=False)
    q = Queue.from_url(stack.redis_url, DEMO_QUEUE)
    q.conn.delete(DEMO_QUEUE, DEMO_RESULTS)
    _register_demo(stack, replicas)
    started = time.time()
    _push_demo_jobs(q, jobs)
    results = _await_results(stack, q, jobs, started, stopping, console)
    wall = time.time() - started
    failures = sum(1 for r in results if r.get("status") != "ok") + int(q.stats().get("dead") or 0)
    console.print(_summary(jobs, results, failures, started, wall))
    console.print("latency: enqueue to result, all jobs pushed at once (so it includes queueing).")
    with stack.admin() as hub:
        hub.delete(f"/api/tasks/{DEMO_TASK}")
    return len(results) == jobs and failures == 0


def _register_demo(stack: Any, replicas: int) -> None:
    """(Re)create the demo task: the worker image on docker, this Python on process."""
    if stack.runtime == "docker":
        # The gridq-worker image (Dockerfile, target worker) ships the demo app too.
        run: dict[str, Any] = {
            "image": os.environ.get("GRIDQ_DEMO_IMAGE", "gridq-worker:latest"),
            "command": ["gridq", "worker", "gridq.examples.demo:app"],
        }
    else:
        run = {
            "command": [sys.executable, "-m", "gridq.cli.main", "worker", "gridq.examples.demo:app"]
        }
    body = {
        "name": DEMO_TASK,
        **run,
        "input_redis": stack.redis_url,
        "input_queue": DEMO_QUEUE,
        "output_queue": DEMO_RESULTS,
        "replicas": replicas,
    }
    with stack.admin() as hub:
        hub.delete(f"/api/tasks/{DEMO_TASK}")
        r = hub.post("/api/tasks", json=body)
        if r.status_code >= 300:
            fail(f"the hub refused the demo task: {r.status_code} {r.text[:300]}")


def _push_demo_jobs(q: Any, jobs: int) -> None:
    from gridq import protocol

    batch: list[bytes] = []
    for i in range(jobs):
        batch.append(protocol.encode("primes_below", [i % 500], job_id=protocol.new_id()))
        if len(batch) == 1000:
            q.push_items(batch)
            batch = []
    if batch:
        q.push_items(batch)


def _await_results(
    stack: Any, q: Any, jobs: int, started: float, stopping: threading.Event, console: Any
) -> list[dict[str, Any]]:
    """Pop results with a progress bar until all are in, Ctrl+C, or the deadline."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results: list[dict[str, Any]] = []
    with Progress(
        TextColumn("[bold]demo"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        bar = progress.add_task("jobs", total=jobs, rate="")
        deadline = time.time() + max(60.0, jobs / 200)
        while len(results) < jobs and not stopping.is_set():
            stack._check_alive()
            popped = q.conn.rpop(DEMO_RESULTS, 5000)
            if popped:
                results.extend(json.loads(x) for x in popped)
                done = len(results)
                elapsed = max(time.time() - started, 1e-6)
                progress.update(bar, completed=done, rate=f"{done / elapsed:,.0f} jobs/s")
            elif time.time() > deadline:
                break
            else:
                time.sleep(0.05)
    return results


def _summary(
    jobs: int, results: list[dict[str, Any]], failures: int, started: float, wall: float
) -> Any:
    from rich.table import Table

    lat = sorted(
        max(0.0, float(r["finished_at"]) - float(r.get("enqueued_at") or started))
        for r in results
        if "finished_at" in r
    )

    def pct(p: float) -> str:
        if not lat:
            return "-"
        return f"{lat[min(len(lat) - 1, int(p * len(lat)))] * 1000:,.0f} ms"

    t = Table(title="gridq demo")
    for col in ("jobs", "done", "jobs/s", "p50 latency", "p99 latency", "failures", "wall time"):
        t.add_column(col, justify="right")
    done = len(results)
    t.add_row(
        str(jobs),
        str(done),
        f"{done / max(wall, 1e-6):,.0f}",
        pct(0.50),
        pct(0.99),
        str(failures),
        f"{wall:.1f} s",
    )
    return t
