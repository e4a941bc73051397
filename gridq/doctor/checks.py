"""The result of one doctor check: what was checked, how it went, what was seen, the fix.

Every text that goes into a result is passed through ``mask_text``: a check may quote an
error message that carries a Redis URL, and no password may leave through doctor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from gridq.redisurl import mask_text

Status = Literal["ok", "warn", "fail"]
ORDER: dict[str, int] = {"fail": 0, "warn": 1, "ok": 2}


class Check(BaseModel):
    """One check's outcome. ``name`` is a stable id (``redis.maxmemory-policy``); ``target``
    says what it looked at (``task resize``, ``hub Redis redis://h:6379/0``)."""

    name: str = Field(description="stable id of the check, e.g. redis.maxmemory-policy")
    status: Status
    saw: str = Field(description="what the check saw, in plain words")
    fix: str = Field(default="", description="the fix in one sentence (empty when ok)")
    target: str = Field(default="", description="what was checked: a Redis, the hub, a task")

    @field_validator("saw", "fix", "target")
    @classmethod
    def _masked(cls, v: str) -> str:
        return mask_text(v)

    @property
    def label(self) -> str:
        return f"{self.name} [{self.target}]" if self.target else self.name

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


def ok(name: str, saw: str, target: str = "") -> Check:
    return Check(name=name, status="ok", saw=saw, target=target)


def warn(name: str, saw: str, fix: str, target: str = "") -> Check:
    return Check(name=name, status="warn", saw=saw, fix=fix, target=target)


def fail(name: str, saw: str, fix: str, target: str = "") -> Check:
    return Check(name=name, status="fail", saw=saw, fix=fix, target=target)


def failed(results: Iterable[Check]) -> bool:
    return any(r.status == "fail" for r in results)


def sort_key(c: Check) -> int:
    """Failures first, then warnings; a stable sort keeps the run order within each."""
    return ORDER[c.status]


def from_dicts(items: Iterable[dict[str, Any]]) -> list[Check]:
    """Results as the hub's /api/doctor serves them, back into Check objects."""
    return [Check.model_validate(i) for i in items]
