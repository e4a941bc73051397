"""The `gridq` command as a user runs it: its own process, a state folder, and none of
the test runner's GRIDQ_* variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_gridq(
    *args: str,
    state: Path,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
    base["GRIDQ_STATE_DIR"] = str(state)
    return subprocess.run(
        [sys.executable, "-m", "gridq.cli.main", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        input=stdin,
        timeout=timeout,
    )
