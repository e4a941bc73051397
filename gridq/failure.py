"""``Failure``: what a chord callback (or a group's ``get()``) sees in the place of a
member that went dead or was cancelled.

On the wire a failure is the JSON object ``{"__gridq_failure__": 1, "error_type": ...,
"error": ...}`` (docs/workflows.md); ``revive`` turns those back into ``Failure``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MARK = "__gridq_failure__"


@dataclass(frozen=True, slots=True)
class Failure:
    """A workflow member that did not succeed: its last ``error_type`` and ``error``."""

    error_type: str
    error: str

    def to_json(self) -> str:
        return json.dumps(
            {MARK: 1, "error_type": self.error_type, "error": self.error}, separators=(",", ":")
        )


def revive(value: Any) -> Any:
    """``value`` with every failure marker in a list (one level deep) made a Failure."""
    if isinstance(value, dict) and value.get(MARK) == 1:
        return Failure(str(value.get("error_type", "")), str(value.get("error", "")))
    if isinstance(value, list):
        return [revive(v) if isinstance(v, dict) else v for v in value]
    return value
