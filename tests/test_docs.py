"""Docs that are generated or promised stay true."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_doc_is_current() -> None:
    from gridq.cli.confdoc import PARTS, render

    text = render()
    for title, _, _ in PARTS:
        assert f"## `{title}`" in text, f"{title} settings could not be loaded"
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == text, (
        "docs/configuration.md is stale: run `python -m gridq.cli.confdoc > docs/configuration.md`"
    )


def test_readme_quick_start_is_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pip install . && gridq up --demo" in readme
    assert "pip install -e '.[dev]' && python -m pytest" in readme


def test_docs_linked_from_readme_exist() -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    for link in re.findall(r"\]\((docs/[^)]+)\)", readme):
        assert (ROOT / link).exists(), f"README links to missing {link}"
