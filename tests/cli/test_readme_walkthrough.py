"""README's REST walkthrough, run literally on `gridq up`: the commands are read from
README.md and the exports from what `gridq up` prints, so neither can drift from the
other or from the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import ROOT, Up, user_env

from tests.support import need


def walkthrough() -> str:
    """The first ```sh block after the README's "### REST walkthrough" heading."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### REST walkthrough", 1)[1]
    m = re.search(r"```sh\n(.*?)```", section, re.S)
    assert m, "the README's REST walkthrough has no ```sh block"
    return m.group(1)


@pytest.fixture
def up(tmp_path: Path, redis_binary: str) -> Iterator[Up]:
    u = Up(tmp_path / "state")
    try:
        u.wait_for("Ctrl+C stops everything")
        yield u
    finally:
        u.stop()


def test_the_readme_walkthrough_runs_on_gridq_up(up: Up, tmp_path: Path) -> None:
    if not shutil.which("redis-cli"):
        need("redis-cli (apt-get install redis-tools)")
    exports = [line.strip() for line in up.lines if line.strip().startswith("export GRIDQ_")]
    assert [e.split("=", 1)[0] for e in exports] == [
        "export GRIDQ_HUB_URL",
        "export GRIDQ_HUB_TOKEN",
        "export GRIDQ_REDIS_URL",
    ], up.lines
    script = "set -euo pipefail\n" + "\n".join(exports) + "\n" + walkthrough()
    # Another shell, in another folder: nothing but the pasted exports and the README.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = user_env(tmp_path / "no-stack-here")
    r = subprocess.run(
        ["bash", "-c", script],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert json.loads(lines[0])["name"] == "squares", r.stdout  # the hub's answer to the POST
    # BRPOP prints the list's name, then the item: each result is the square, raw.
    results = sorted(lines[i + 1] for i, line in enumerate(lines[:-1]) if line == "squares")
    assert results == ["1", "4", "9"], r.stdout
    assert "squares" in r.stdout and "online" in r.stdout  # gridq status: task and node
    assert "gridq_task" in r.stdout  # the metrics line
