"""When a schedule ticks, and which ticks run after downtime: pure, no Redis, no clock.

A tick is identified by its unix time in whole seconds; every hub replica computes the
same ticks for a schedule, which is what lets a tick be claimed once grid-wide.

- ``every: S``: ticks at the multiples of S seconds since the epoch (so restarts and
  replicas agree without storing an anchor).
- ``cron``: cronsim over the schedule's timezone. Across DST changes cronsim follows
  Debian cron: a time skipped by spring-forward runs right after the jump (02:30 ->
  03:00), a time repeated by fall-back runs once (the first), and a wildcard hour
  ("0 * * * *") runs every real hour, both 02:00s included.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cronsim import CronSim

from .models_schedules import ScheduleSpec

MAX_CATCH_UP = 100  # misfire "all" runs at most this many missed ticks


def ticks_between(spec: ScheduleSpec, after: float, until: float, limit: int) -> list[int]:
    """Ticks t with after < t <= until, oldest first: the latest ``limit`` of them."""
    if until <= after:
        return []
    if spec.every is not None:
        s = spec.every
        last = math.floor(until / s) * s
        first = max(math.floor(after / s) * s + s, last - (limit - 1) * s)
        return list(range(int(first), int(last) + 1, s))
    assert spec.cron is not None
    tz = ZoneInfo(spec.timezone)
    # Backwards from `until` (inclusive), so a year of downtime costs `limit` steps.
    start = datetime.fromtimestamp(math.floor(until) + 1, UTC).astimezone(tz)
    out: list[int] = []
    for dt in CronSim(spec.cron, start, reverse=True):
        t = int(dt.timestamp())
        if t <= after or len(out) >= limit:
            break
        if t <= until:
            out.append(t)
    return out[::-1]


def next_tick(spec: ScheduleSpec, after: float) -> int:
    """The first tick strictly after ``after``."""
    if spec.every is not None:
        return int(math.floor(after / spec.every) * spec.every + spec.every)
    assert spec.cron is not None
    tz = ZoneInfo(spec.timezone)
    start = datetime.fromtimestamp(math.floor(after), UTC).astimezone(tz)
    return int(next(iter(CronSim(spec.cron, start))).timestamp())


def jitter_of(spec: ScheduleSpec, tick: int) -> float:
    """The tick's delay in [0, jitter): derived from (schedule, tick), so every replica
    and every restart picks the same one, and a tick's time never moves."""
    if not spec.jitter:
        return 0.0
    return random.Random(f"{spec.name}:{tick}").uniform(0, spec.jitter)


@dataclass(frozen=True, slots=True)
class Plan:
    run: list[int]  # ticks to push now, oldest first
    skip_to: int | None  # the latest misfired tick left out (claimed without a job)


def plan(spec: ScheduleSpec, last_tick: float, now: float, misfire_before: float) -> Plan:
    """The ticks due at ``now`` after ``last_tick`` (the last claimed).

    Ticks at or before ``misfire_before`` (the end of the last time the grid had no
    leader, hub/leader.py) fell due while nothing could run them: misfires, handled by
    ``spec.misfire``. Later ticks are only late (a handover, a slow loop) and all run.
    A tick whose jitter has not passed yet waits, and so does every tick after it.
    """
    due = ticks_between(spec, last_tick, now, MAX_CATCH_UP + 1)
    missed = [t for t in due if t <= misfire_before]
    on_time = [t for t in due if t > misfire_before]
    keep = {"skip": 0, "once": 1, "all": MAX_CATCH_UP}[spec.misfire]
    run = (missed[len(missed) - keep :] if keep else []) + on_time
    skipped = [t for t in missed if t not in run]
    ready: list[int] = []
    for t in run:
        if t + jitter_of(spec, t) > now:
            break
        ready.append(t)
    return Plan(run=ready, skip_to=skipped[-1] if skipped else None)


def job_id(name: str, tick: int) -> str:
    return f"sched:{name}:{tick}"


def parse_job_id(jid: str) -> tuple[str, int] | None:
    """(name, tick) of a tick's job id; None for a run-now id."""
    prefix, _, rest = jid.partition(":")
    name, _, tick = rest.rpartition(":")
    if prefix != "sched" or not name or not tick.isdigit():
        return None
    return name, int(tick)
