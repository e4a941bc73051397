"""The worker's signature policy from its settings (gridq.signing; checked in results.prepare)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gridq.signing import Verifier, parse_keys

if TYPE_CHECKING:
    from gridq.worker.settings import WorkerSettings


def verifier_for(settings: WorkerSettings) -> Verifier | None:
    """None when the worker neither verifies nor refuses anything (the cheap path)."""
    key = settings.signing_key
    v = Verifier(parse_keys(key.get_secret_value() if key else None), settings.require_signed)
    return v if v.active else None
