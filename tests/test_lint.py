"""ruff, mypy and import-linter run with the tests, so CI fails on a lint or type error
or on an import across the part boundaries (pyproject.toml, [tool.importlinter])."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> list[str]:
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return [str(exe)]
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed (pip install -e '.[dev]')")
    return [found]


@pytest.mark.parametrize(
    "args",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_clean(args: list[str]) -> None:
    r = subprocess.run(
        [*_tool(args[0]), *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, f"{' '.join(args)}:\n{r.stdout[-4000:]}{r.stderr[-2000:]}"


def test_part_boundaries(tmp_path: Path) -> None:
    """lint-imports finds a package's modules by walking its folder, but hub/, node/ and
    worker/ are mapped into gridq by package-dir: stage gridq with all four as links."""
    staged = tmp_path / "gridq"
    staged.mkdir()
    for entry in (ROOT / "gridq").iterdir():
        if entry.name != "__pycache__":
            (staged / entry.name).symlink_to(entry)
    for part in ("hub", "node", "worker"):
        (staged / part).symlink_to(ROOT / part)
    # lint-imports puts its working directory first on sys.path: the staged tree wins.
    r = subprocess.run(
        [*_tool("lint-imports"), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, f"lint-imports:\n{r.stdout[-4000:]}{r.stderr[-2000:]}"
