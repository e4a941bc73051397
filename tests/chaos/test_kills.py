"""Kills: SIGKILLed workers, a SIGKILLed hub and node agent, a Redis restart; nothing lost."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import need

pytestmark = pytest.mark.slow


def test_kills_lose_nothing(chaos: ModuleType, tmp_path: Path) -> None:
    # CI form: 3,000 jobs over ~20 s; a worker SIGKILL every 2 s, one hub SIGKILL+restart,
    # one node agent SIGKILL+restart, one clean Redis restart (SHUTDOWN fsyncs the AOF,
    # so nothing may be lost; the SIGKILL restart is in the long form, `gridq bench chaos`).
    rep = chaos.run_kills(
        tmp_path, jobs=3000, rate=150.0, hub_restarts=1, lease=2.0, min_worker_kills=4
    )
    _nothing_lost(rep)


def test_kills_lose_nothing_docker_runtime(chaos: ModuleType, tmp_path: Path) -> None:
    # The same chaos with workers in containers (real engine, gridq-worker:test plus the
    # chaos handler, host network): worker containers SIGKILLed, the hub and one node
    # agent SIGKILLed and restarted (the agent adopts its containers), Redis restarted.
    if not _docker_ready():
        need("a Docker engine and gridq-worker:test (scripts/build-test-images.sh worker)")
    rep = chaos.run_kills(
        tmp_path,
        jobs=2000,
        rate=120.0,
        hub_restarts=1,
        lease=2.0,
        runtime="docker",
        min_worker_kills=4,
    )
    _nothing_lost(rep)
    # Nothing of this grid's is left running.
    left = subprocess.run(
        ["docker", "ps", "-q", "--filter", "label=gridq.task=chaos"], capture_output=True, text=True
    )
    assert left.stdout.strip() == ""


def _docker_ready() -> bool:
    try:
        r = subprocess.run(
            ["docker", "image", "inspect", "gridq-worker:test"], capture_output=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _nothing_lost(rep: Any) -> None:
    assert rep.worker_kills >= 4 and rep.hub_restarts == 1 and rep.node_kills == 1
    assert rep.redis_restarts == 1
    assert rep.lost_gridq == 0 and rep.lost_fsync == 0, rep.table()
    assert rep.unique == rep.jobs, rep.table()
    assert rep.dead == 0, rep.table()
    assert rep.leftover == 0, rep.table()
    assert rep.duplicates <= rep.dup_bound, rep.table()
    # Every result is one handler run; a run whose result was lost with its worker is a rerun.
    assert rep.runs >= rep.results
