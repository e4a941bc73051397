"""`gridq bench …` imports bench.<script> from the source checkout, wherever it is run
from: the scripts reach bench.* and tests.support by their full names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GRIDQ = str(Path(sys.executable).parent / "gridq")


@pytest.mark.parametrize(("command", "usage"), [
    ("throughput", "--jobs"), ("hub", "--nodes"), ("chaos", "--scenario"),
])  # fmt: skip
def test_bench_scripts_load_from_any_directory(tmp_path: Path, command: str, usage: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        [GRIDQ, "bench", command, "--help"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert usage in r.stdout, r.stdout
