"""REST models of schedules (docs/schedules.md). Unknown fields, a bad cron expression
and an unknown timezone are 422s naming the field; "unknown task" needs the store and is
checked by routes/schedules.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# No ':' (job ids are sched:<name>:<tick>), no braces (Redis Cluster hash tags).
SCHEDULE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_JITTER = 3600.0

Misfire = Literal["skip", "once", "all"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobPayload(_Strict):
    task: str = Field(min_length=1, description="the handler's task name in the worker")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class Payload(_Strict):
    """Exactly one of ``item`` (a raw job, pushed as is) or ``job`` (a gridq envelope)."""

    item: str | None = None
    job: JobPayload | None = None

    @model_validator(mode="after")
    def _one(self) -> Payload:
        if (self.item is None) == (self.job is None):
            raise ValueError(
                'give exactly one of "item" (raw text) or "job" ({task, args, kwargs})'
            )
        return self


def check_cron(expr: str) -> str:
    """Five fields, as cronsim parses them; raises ValueError with cronsim's reason."""
    if len(expr.split()) != 5:
        raise ValueError("a cron expression has five fields: minute hour day month weekday")
    try:
        CronSim(expr, datetime.now(UTC))
    except CronSimError as exc:
        raise ValueError(f"bad cron expression: {exc}") from None
    return expr


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r} (an IANA name, e.g. Europe/Berlin)") from None
    return name


CronExpr = Annotated[str, AfterValidator(check_cron)]
TimezoneName = Annotated[str, AfterValidator(check_timezone)]


class _Timing(_Strict):
    """The fields a PATCH may change (all optional there)."""

    task: str | None = None
    cron: CronExpr | None = Field(default=None, description='five fields, e.g. "*/5 * * * *"')
    every: int | None = Field(
        default=None, ge=1, le=366 * 86400, description="seconds between ticks (whole seconds)"
    )
    timezone: TimezoneName | None = Field(default=None, description="IANA name; default UTC")
    payload: Payload | None = None
    misfire: Misfire | None = None
    jitter: float | None = Field(
        default=None, ge=0, le=MAX_JITTER, description="seconds of random delay per tick"
    )
    paused: bool | None = None


class ScheduleSpec(_Strict):
    """A schedule as stored (HUB_SCHEDULES value) and as POST takes it."""

    name: str = Field(pattern=SCHEDULE_NAME_RE.pattern, description="letters, digits, _ . -")
    task: str = Field(min_length=1, description="a registered task: jobs go to its input queue")
    cron: CronExpr | None = Field(default=None, description='five fields, e.g. "*/5 * * * *"')
    every: int | None = Field(
        default=None, ge=1, le=366 * 86400, description="seconds between ticks (whole seconds)"
    )
    timezone: TimezoneName = Field(
        default="UTC", description="IANA name the cron fields are read in"
    )
    payload: Payload
    misfire: Misfire = Field(
        default="skip",
        description="after downtime: skip (next tick only), once (one catch-up), all (every"
        " missed tick, at most 100)",
    )
    jitter: float = Field(default=0.0, ge=0, le=MAX_JITTER, description="seconds of delay per tick")
    paused: bool = False

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every is None):
            raise ValueError('give exactly one of "cron" or "every"')
        return self


class SchedulePatch(_Timing):
    """PATCH body: any field but the name. Setting ``cron`` clears ``every`` and back."""


class ScheduleOut(ScheduleSpec):
    next_run: float | None = Field(description="unix time of the next tick (null while paused)")
    last_run: float | None = Field(description="unix time the last job was pushed")
    last_job_id: str | None
    runs: int = Field(description="jobs pushed by this schedule (ticks and runs now)")
    lag: float | None = Field(description="seconds the last tick was pushed after its time")
