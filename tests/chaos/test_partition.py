"""Partitions: Redis gone for several seconds mid-run; everyone recovers, one line each."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow


def test_redis_outage_recovers_and_logs_once(chaos: ModuleType, tmp_path: Path) -> None:
    rep = chaos.run_partition(tmp_path, jobs=1200, rate=100.0, outage=7.0)
    assert rep.lost == 0 and rep.dead == 0
    assert rep.restarts == 0, "workers must ride out the outage, not be restarted"
    assert rep.worker_down_lines and all(n == 1 for n in rep.worker_down_lines.values()), rep
    assert all(n == 1 for n in rep.worker_up_lines.values()), rep
    # The node talks to the hub, which answers 503 while its Redis is gone.
    assert rep.node_down_lines == [1] and rep.node_up_lines == [1], rep
