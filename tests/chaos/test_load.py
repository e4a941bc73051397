"""Load: simulated nodes heartbeating (bench/heartbeats.py's simulator) while clients read
GET /api/tasks. The CI form is short and shares the machine, so it asserts no errors and
a loose latency bound; `gridq bench chaos --scenario load` (500 nodes) holds p99 < 100 ms."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow


def test_heartbeats_and_reads_under_load(chaos: ModuleType, tmp_path: Path) -> None:
    rep = chaos.run_load(tmp_path, nodes=200, interval=2.0, duration=8.0)
    assert rep.hb_errors == 0 and rep.read_errors == 0
    assert rep.heartbeats_per_s > 0.8 * rep.nodes / rep.interval
    assert rep.reads > 50
    assert rep.hb_p99_ms < 1000 and rep.read_p99_ms < 1000, rep.table()
