"""The skip rule, kept: need() is the only way a test skips, and under CI a skip fails
the session (tests/support/ci_guard.py), whatever raised it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIPS = ROOT / "tests" / "support" / "skips.py"
# Every way pytest offers to skip, but the one need() uses.
BYPASS = re.compile(r"pytest\.skip\(|importorskip|mark\.skip|skipif|xfail")


def test_every_skip_goes_through_need() -> None:
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path in (SKIPS, Path(__file__).resolve()):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if BYPASS.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "skip through tests.support.need():\n" + "\n".join(found)


def _run(tmp_path: Path, body: str, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_one.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.support.ci_guard", "-p",
         "no:cacheprovider", "test_one.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


RAW_SKIP = "import pytest\n\ndef test_x():\n    pytest.skip('a plugin skipped this')\n"
NEED = "from tests.support import need\n\ndef test_x():\n    need('redis-server')\n"


@pytest.mark.parametrize("ci", ["true", "1", "yes", "TRUE"])
def test_a_skip_under_ci_fails_the_session(tmp_path: Path, ci: str) -> None:
    r = _run(tmp_path, RAW_SKIP, ci)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "SKIPPED under CI: test_one.py::test_x" in r.stdout


def test_need_fails_under_ci_and_skips_elsewhere(tmp_path: Path) -> None:
    r = _run(tmp_path, NEED, "true")
    assert r.returncode == 1 and "required under CI=true: redis-server" in r.stdout, r.stdout
    r = _run(tmp_path, NEED, None)
    assert r.returncode == 0 and "1 skipped" in r.stdout, r.stdout
    r = _run(tmp_path, RAW_SKIP, "false")
    assert r.returncode == 0 and "1 skipped" in r.stdout, r.stdout
