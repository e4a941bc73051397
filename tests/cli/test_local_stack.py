"""The local stack (`gridq up`) and the CLI commands against it, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from gridq.localstack import Stack
from tests.support.cli import run_gridq

ROOT = Path(__file__).resolve().parents[2]


def gridq(*args: str, state: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_gridq(*args, state=state, stdin=stdin, timeout=60)


def _tree(pids: list[int]) -> set[int]:
    out: set[int] = set()
    for pid in pids:
        try:
            p = psutil.Process(pid)
            out.add(pid)
            out.update(c.pid for c in p.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture
def stack(tmp_path: Path, redis_binary: str) -> Iterator[Stack]:
    s = Stack(state=tmp_path / "state")
    s.start()
    yield s
    s.stop()


def test_cli_against_a_live_stack(stack: Stack, tmp_path: Path) -> None:
    state = stack.state
    assert (state / "tokens.json").stat().st_mode & 0o777 == 0o600
    assert (state / "stack.json").stat().st_mode & 0o777 == 0o600

    r = gridq(
        "task",
        "register",
        "--name",
        "squares",
        "--command",
        f"{sys.executable} -m gridq.cli.main worker gridq.examples.demo:app",
        "--input-redis",
        stack.redis_url,
        "--input-queue",
        "nums",
        "--output-queue",
        "out",
        "--replicas",
        "1",
        state=state,
    )
    assert r.returncode == 0, r.stderr
    assert "registered task squares" in r.stdout
    r = gridq(
        "task",
        "register",
        "--name",
        "squares",
        "--command",
        "x",
        "--input-redis",
        stack.redis_url,
        "--input-queue",
        "nums",
        state=state,
    )
    assert r.returncode == 1 and "409" in r.stderr and "Traceback" not in r.stderr
    r = gridq(
        "task",
        "register",
        "--name",
        "Bad_Name",
        "--command",
        "x",
        "--input-redis",
        stack.redis_url,
        "--input-queue",
        "q",
        state=state,
    )
    assert r.returncode == 1 and "name" in r.stderr

    r = gridq("push", "nums", "-", state=state, stdin="\n".join(str(i) for i in range(1, 201)))
    assert r.returncode == 0, r.stderr

    def done() -> dict | None:
        out = json.loads(gridq("task", "show", "squares", "--json", state=state).stdout)
        return out if (out.get("live") or {}).get("processed") == 200 else None

    deadline = time.time() + 40
    shown = None
    while time.time() < deadline and not (shown := done()):
        time.sleep(0.5)
    assert shown, "the 200 jobs were not processed"
    assert stack.redis_url.split("@")[-1] in shown["input_redis"]

    r = gridq("status", state=state)
    assert r.returncode == 0, r.stderr
    assert "squares" in r.stdout and "online" in r.stdout
    st = json.loads(gridq("status", "--json", state=state).stdout)
    assert st["tasks"][0]["name"] == "squares" and st["nodes"][0]["status"] == "online"

    r = gridq("task", "list", "--json", state=state)
    assert [t["name"] for t in json.loads(r.stdout)] == ["squares"]
    assert gridq("task", "pause", "squares", state=state).returncode == 0
    assert (
        json.loads(gridq("task", "show", "squares", "--json", state=state).stdout)["status"]
        == "paused"
    )
    assert gridq("task", "resume", "squares", state=state).returncode == 0
    r = gridq("task", "next", state=state)
    # The local stack schedules in parallel: `next` is refused with the hub's reason
    # (a clean CLI error, exit 1), not a crash.
    assert r.returncode == 1, r.stdout + r.stderr
    assert "sequential" in r.stderr.lower() and "Traceback" not in r.stderr, r.stderr

    # A raw item the default handler cannot parse fails, is retried, and lands in the DLQ.
    gridq("push", "nums", "not-a-number", state=state)
    deadline = time.time() + 40
    dead: list = []
    while time.time() < deadline and not dead:
        dead = json.loads(gridq("dlq", "list", "nums", "--json", state=state).stdout)
        time.sleep(0.5)
    assert dead and dead[0]["error_type"] == "ValueError"
    assert gridq("task", "delete", "squares", state=state).returncode == 0
    assert json.loads(gridq("task", "list", "--json", state=state).stdout) == []


def test_up_leaves_no_process_behind(tmp_path: Path, redis_binary: str) -> None:
    s = Stack(state=tmp_path / "state")
    s.start()
    pids = _tree([p.pid for p in s.procs.values()])
    assert len(pids) >= 3
    s.stop()
    time.sleep(0.5)
    assert not _alive(pids)
    assert not (s.state / "stack.json").exists()
    # Queued jobs survive a restart: Redis persists to the state dir.


def test_queued_jobs_survive_a_stack_restart(tmp_path: Path, redis_binary: str) -> None:
    from gridq.queue import Queue

    s = Stack(state=tmp_path / "state")
    s.start()
    Queue.from_url(s.redis_url, "keep").push_raw(*[str(i) for i in range(100)])
    port = s.redis_port
    s.stop()
    s2 = Stack(state=tmp_path / "state", redis_port=port)
    s2.start()
    try:
        assert Queue.from_url(s2.redis_url, "keep").stats()["depth"] == 100
        assert s2.tokens == s.tokens and not s2.new_tokens
    finally:
        s2.stop()


@pytest.mark.slow
def test_demo_in_a_fresh_venv(tmp_path: Path, redis_binary: str) -> None:
    """As a new user: install the package into a new venv, run `gridq up --demo` elsewhere."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GRIDQ_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["GRIDQ_STATE_DIR"] = str(tmp_path / "state")
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    # No source checkout here: every benchmark says what it needs, --help included.
    for args in (["--help"], ["chaos", "--help"], ["throughput", "--jobs", "10"]):
        r = subprocess.run(
            [str(venv / "bin" / "gridq"), "bench", *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "source checkout" in r.stderr and "pip install -e '.[bench]'" in r.stderr
        assert "Traceback" not in r.stderr
    before = {p.pid for p in psutil.process_iter()}
    r = subprocess.run(
        [str(venv / "bin" / "gridq"), "up", "--demo", "--jobs", "5000"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard; the demo's speed is in bench/ and its own table
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "gridq demo" in r.stdout and "jobs/s" in r.stdout and "p99 latency" in r.stdout
    row = [line for line in r.stdout.splitlines() if "5000 │ 5000" in line]
    assert row, r.stdout
    time.sleep(0.5)
    # This stack's Redis by its port: other tests on the machine start redis-servers too.
    port = re.search(r"redis\s+redis://127\.0\.0\.1:(\d+)/", r.stdout)
    assert port, r.stdout
    ours = f"redis-server 127.0.0.1:{port.group(1)}"
    leftovers = [
        p
        for p in psutil.process_iter(["pid", "cmdline"])
        if p.pid not in before
        and any(str(venv) in c or ours in c for c in (p.info["cmdline"] or []))
    ]
    assert not leftovers, [p.info["cmdline"] for p in leftovers]
