"""Partitions: Redis gone for several seconds mid-run; everyone recovers, one line each."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow


def test_redis_outage_recovers_and_logs_once(chaos: ModuleType, tmp_path: Path) -> None:
    # 10 s: the figure. The hub's state and the jobs share this one Redis, so the
    # hub is blind for the whole outage too; the lease is 2 s and the intervals 0.5 s.
    rep = chaos.run_partition(tmp_path, jobs=1200, rate=100.0, outage=10.0)
    assert rep.lost == 0 and rep.dead == 0
    # The same worker processes, not replacements: the node neither stopped nor started
    # any (before the fix the hub declared the node offline once its Redis was back, the
    # node got no assignments, stopped both workers and started two new ones).
    assert len(rep.instances_before) == 2, rep
    assert rep.instances_after == rep.instances_before, rep
    assert rep.node_stops == 0 and rep.node_starts == 0, rep
    assert rep.restarts == 0, "workers must ride out the outage, not be restarted"
    assert set(rep.worker_down_lines) == {f"{i}.log" for i in rep.instances_before}, rep
    assert all(n == 1 for n in rep.worker_down_lines.values()), rep
    assert all(n == 1 for n in rep.worker_up_lines.values()), rep
    # The node talks to the hub, which answers 503 while its Redis is gone.
    assert rep.node_down_lines == [1] and rep.node_up_lines == [1], rep
    assert rep.hub_down_lines == 1 and rep.hub_up_lines == 1, rep
