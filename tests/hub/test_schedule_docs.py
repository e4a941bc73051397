"""The schedule files in the docs are valid: apply would accept them as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gridq.cli.schedule_cmd import load_file
from gridq.hub.models_schedules import ScheduleSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("doc", ["schedules.md", "migration.md"])
def test_toml_examples_are_valid_schedules(doc: str, tmp_path: Path) -> None:
    text = (ROOT / "docs" / doc).read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert blocks, f"docs/{doc} has no TOML example"
    for i, block in enumerate(blocks):
        f = tmp_path / f"{i}.toml"
        f.write_text(block)
        for entry in load_file(f):
            ScheduleSpec.model_validate(entry)
