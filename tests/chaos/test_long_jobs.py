"""Long jobs: a job running 3x the lease runs once while its worker lives."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow


def test_long_jobs_run_once(chaos: ModuleType, tmp_path: Path) -> None:
    runs = chaos.run_long_jobs(tmp_path, jobs=8, lease=1.0, factor=3.0)
    assert len(runs) == 8
    assert all(n == 1 for n in runs.values()), runs
