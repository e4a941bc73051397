"""Kills: SIGKILLed workers, a SIGKILLed hub and node agent, a Redis restart; nothing lost."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow


def test_kills_lose_nothing(chaos: ModuleType, tmp_path: Path) -> None:
    # CI form: 3,000 jobs over ~20 s; a worker SIGKILL every 2 s, one hub SIGKILL+restart,
    # one node agent SIGKILL+restart, one clean Redis restart (SHUTDOWN fsyncs the AOF,
    # so nothing may be lost; the SIGKILL restart is in the long form, `gridq bench chaos`).
    rep = chaos.run_kills(tmp_path, jobs=3000, rate=150.0, hub_restarts=1, lease=2.0)
    assert rep.worker_kills >= 4 and rep.hub_restarts == 1 and rep.node_kills == 1
    assert rep.redis_restarts == 1
    assert rep.lost_gridq == 0 and rep.lost_fsync == 0, rep.table()
    assert rep.unique == rep.jobs, rep.table()
    assert rep.dead == 0, rep.table()
    assert rep.leftover == 0, rep.table()
    assert rep.duplicates <= rep.dup_bound, rep.table()
    # Every result is one handler run; a run whose result was lost with its worker is a rerun.
    assert rep.runs >= rep.results
