"""The docs-as-tests collector itself: what it picks up, and what a marker covers."""

from __future__ import annotations

from pathlib import Path

import pytest
from doc_examples import collect

DOC = """# Title

Prose mentioning gridq status is not collected.

```sh
export GRIDQ_HUB_URL=http://127.0.0.1:8080
curl -X POST "$GRIDQ_HUB_URL/api/tasks" -d '{
  "name": "a"
}'
# not-run: needs a registry image
gridq node --hub-url http://hub:8080
gridq status
```

<!-- not-run: an answer, not a request -->

```json
{"detail": "x"}
```

```json
{"name": "b", "image": "x:1"}
```

    INPUT_QUEUE=numbers \\
        gridq worker myjobs:app

```python
# myjobs.py
print("hi")
```

```toml
# schedules.toml
[[schedule]]
```

```toml
[[not_a_file]]
```
"""


def _collect(tmp_path: Path, text: str) -> list:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(text)
    return collect(tmp_path)


def test_what_is_collected_and_what_markers_cover(tmp_path: Path) -> None:
    got = [(e.line, e.kind, e.text.split("\n")[0], e.skip) for e in _collect(tmp_path, DOC)]
    assert got == [
        (7, "command", """curl -X POST "$GRIDQ_HUB_URL/api/tasks" -d '{""", None),
        (11, "command", "gridq node --hub-url http://hub:8080", "needs a registry image"),
        (12, "command", "gridq status", None),
        (18, "json", '{"detail": "x"}', "an answer, not a request"),
        (22, "json", '{"name": "b", "image": "x:1"}', None),
        (25, "command", "INPUT_QUEUE=numbers \\", None),
        (29, "file", "# myjobs.py", None),
        (34, "file", "# schedules.toml", None),
    ]


def test_a_marker_needs_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without a reason"):
        _collect(tmp_path, "<!-- not-run: -->\n```sh\ngridq status\n```\n")
