"""The worker's side of signed jobs: which jobs may not run (gridq.signing)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gridq import protocol
from gridq.signing import UNSIGNED_RAW, Verifier, parse_keys

if TYPE_CHECKING:
    from gridq.worker.results import Outcome
    from gridq.worker.settings import WorkerSettings


def verifier_for(settings: WorkerSettings) -> Verifier | None:
    """None when the worker neither verifies nor refuses anything (the cheap path)."""
    key = settings.signing_key
    v = Verifier(parse_keys(key.get_secret_value() if key else None), settings.require_signed)
    return v if v.active else None


def refused(verifier: Verifier, job: protocol.Job) -> Outcome | None:
    """A dead outcome for a job that must not run; None when it may."""
    verdict = verifier.check(job.item, job.is_raw)
    if verdict is None:
        return None
    from gridq.worker.results import DEAD, Outcome, task_label

    return Outcome(
        DEAD,
        task_label(job),
        error_type="UnsignedRawItem" if verdict.reason == UNSIGNED_RAW else "BadSignature",
        message=verdict.message,
        reason=verdict.reason,
    )
