"""Tick math with a fixed clock: cron in a DST-changing zone, every, misfire plans."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gridq.hub.models_schedules import ScheduleSpec
from gridq.hub.schedule_times import jitter_of, next_tick, parse_job_id, plan, ticks_between

BERLIN = ZoneInfo("Europe/Berlin")


def spec(**kw: Any) -> ScheduleSpec:
    kw.setdefault("name", "s")
    kw.setdefault("task", "t")
    kw.setdefault("payload", {"item": "x"})
    return ScheduleSpec(**kw)


def local(*args: int, fold: int = 0) -> float:
    return datetime(*args, tzinfo=BERLIN, fold=fold).timestamp()  # type: ignore[misc]


def iso(ts: list[int]) -> list[str]:
    return [datetime.fromtimestamp(t, BERLIN).isoformat() for t in ts]


def test_spring_forward_skipped_time_runs_right_after_the_jump() -> None:
    # 2026-03-29 02:00 CET jumps to 03:00 CEST: 02:30 does not exist that day.
    s = spec(cron="30 2 * * *", timezone="Europe/Berlin")
    got = ticks_between(s, local(2026, 3, 28, 12, 0), local(2026, 3, 31, 12, 0), 10)
    assert iso(got) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert next_tick(s, local(2026, 3, 28, 12, 0)) == got[0]


def test_fall_back_repeated_time_runs_once_wildcard_hour_runs_twice() -> None:
    # 2026-10-25 03:00 CEST falls back to 02:00 CET: 02:00-03:00 happens twice.
    daily = spec(cron="30 2 * * *", timezone="Europe/Berlin")
    got = ticks_between(daily, local(2026, 10, 24, 12, 0), local(2026, 10, 26, 12, 0), 10)
    assert iso(got) == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    hourly = spec(cron="0 * * * *", timezone="Europe/Berlin")
    got = ticks_between(hourly, local(2026, 10, 25, 0, 30), local(2026, 10, 25, 4, 30), 10)
    assert iso(got) == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T04:00:00+01:00",
    ]
    # Real hours apart: no two ticks at one instant, none lost.
    assert all(b - a == 3600 for a, b in zip(got, got[1:], strict=False))


def test_cron_in_utc_by_default_and_limit_keeps_the_latest() -> None:
    s = spec(cron="*/5 * * * *")
    t0 = datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")).timestamp()
    got = ticks_between(s, t0, t0 + 3600, 3)
    assert got == [t0 + 3600 - 600, t0 + 3600 - 300, t0 + 3600]


def test_every_ticks_are_aligned_multiples() -> None:
    s = spec(every=10)
    assert ticks_between(s, 1000.5, 1031, 100) == [1010, 1020, 1030]
    assert next_tick(s, 1030) == 1040
    assert ticks_between(s, 1000, 1000 + 10 * 500, 100)[0] == 1000 + 10 * 401


def test_misfire_plans_after_downtime() -> None:
    # Ticks every second; the last claimed was 100; every hub was down until 110.5
    # (misfire_before); now is 112.2: ticks 101..110 missed, 111 and 112 only late.
    kw: dict[str, Any] = {"every": 1}
    skip = plan(spec(misfire="skip", **kw), 100, 112.2, 110.5)
    assert skip.run == [111, 112] and skip.skip_to == 110
    once = plan(spec(misfire="once", **kw), 100, 112.2, 110.5)
    assert once.run == [110, 111, 112] and once.skip_to == 109
    every = plan(spec(misfire="all", **kw), 100, 112.2, 110.5)
    assert every.run == list(range(101, 113)) and every.skip_to is None
    # "all" keeps at most 100 missed ticks.
    long = plan(spec(misfire="all", **kw), 0, 500.2, 499.5)
    assert long.run == list(range(400, 501)) and long.skip_to is None
    # A late tick without downtime (a handover) runs under every policy.
    assert plan(spec(misfire="skip", **kw), 100, 103.1, 50).run == [101, 102, 103]


def test_jitter_is_stable_and_delays_the_tick() -> None:
    s = spec(every=60, jitter=30)
    j = jitter_of(s, 600)
    assert 0 <= j < 30 and j == jitter_of(s, 600)
    assert plan(s, 550, 600 + j - 0.01, 0).run == []
    assert plan(s, 550, 600 + j + 0.01, 0).run == [600]


def test_job_ids_round_trip() -> None:
    assert parse_job_id("sched:daily.report:1790000000") == ("daily.report", 1790000000)
    assert parse_job_id("sched:daily:run-ab12") is None
