"""Load: simulated nodes heartbeating (bench/heartbeats.py's simulator) while clients read
GET /api/tasks. The test asserts what must hold on any machine: every heartbeat and read
answered without error. How fast is the benchmark's business: `gridq bench chaos
--scenario load` (500 nodes) reports the rates and p99s (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow


def test_heartbeats_and_reads_under_load(chaos: ModuleType, tmp_path: Path) -> None:
    rep = chaos.run_load(tmp_path, nodes=200, interval=2.0, duration=8.0)
    assert rep.hb_errors == 0 and rep.read_errors == 0, rep.table()
    # The load ran: the nodes beat (about 4 times each over 8 s at 2 s; once is the
    # floor, whatever the machine's speed) and the readers read.
    assert rep.heartbeats >= rep.nodes and rep.reads > 0, rep.table()
