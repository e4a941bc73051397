"""Schedules on real hub processes sharing one real Redis: exactly one job per tick
with two replicas and a SIGKILL, and each misfire policy after every hub was down.

Ticks are read from the job ids (``sched:<name>:<tick>``), so gaps are measured in
schedule time, not in how fast this machine was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hub_helpers import task_body
from hub_procs import HubProc, wait_for

from gridq import keys, protocol

LEASE = "1.0"  # GRIDQ_HUB_LEADER_LEASE: handover within ~1.25 s; downtime after 3 s


@pytest.fixture
def make_hub(
    redis_url: str, redis_conn: redis.Redis, tmp_path: Path
) -> Iterator[Callable[[], HubProc]]:
    hubs: list[HubProc] = []

    def factory() -> HubProc:
        h = HubProc(redis_url, tmp_path / f"hub{len(hubs)}.log", GRIDQ_HUB_LEADER_LEASE=LEASE)
        hubs.append(h)
        return h.start()

    yield factory
    for h in hubs:
        h.close()


def setup_task(hub: HubProc, redis_url: str) -> None:
    r = hub.http.post("/api/tasks?validate=false", json=task_body(redis_url, "beat"))
    assert r.status_code == 201, r.text


def add_schedule(hub: HubProc, name: str, **kw: Any) -> None:
    body = {"name": name, "task": "beat", "every": 1, "payload": {"job": {"task": name}}}
    body.update(kw)
    r = hub.http.post("/api/schedules", json=body)
    assert r.status_code == 201, r.text


def ticks_by_schedule(conn: redis.Redis) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for item in conn.lrange("beat-in", 0, -1):
        jid = protocol.decode(item).id
        _, name, tick = jid.split(":")
        out.setdefault(name, []).append(int(tick))
    return {k: sorted(v) for k, v in out.items()}


def runs(conn: redis.Redis, name: str) -> int:
    return int(conn.hget(keys.hub_schedule_state(name), "runs") or 0)


def test_two_hubs_one_job_per_tick_through_a_sigkill(
    make_hub: Callable[[], HubProc], redis_url: str, redis_conn: redis.Redis
) -> None:
    a, b = make_hub(), make_hub()
    setup_task(a, redis_url)
    add_schedule(a, "pulse")
    leader = wait_for(lambda: next((h for h in (a, b) if h.leading()), None))
    wait_for(lambda: runs(redis_conn, "pulse") >= 8, timeout=30)
    leader.kill()  # mid-run, no lease released
    wait_for(lambda: runs(redis_conn, "pulse") >= 14, timeout=30)  # the other one took over
    leader.start()  # back, as a follower or the leader again
    wait_for(lambda: runs(redis_conn, "pulse") >= 30, timeout=30)
    other = b if leader is a else a
    other.kill()  # and the survivor of the first kill, so both replicas died once
    wait_for(lambda: runs(redis_conn, "pulse") >= 30, timeout=30)
    for h in (a, b):
        h.stop()
    ticks = ticks_by_schedule(redis_conn)["pulse"]
    assert len(ticks) == len(set(ticks)), "a tick was pushed twice"
    assert len(ticks) == runs(redis_conn, "pulse") >= 30
    gaps = [y - x for x, y in zip(ticks, ticks[1:], strict=False)]
    assert max(gaps) <= 2, f"gap of {max(gaps)} s between ticks: {ticks}"
    # A figure, not an assert (timing belongs to bench/): push time minus tick time.
    lags = sorted(
        (protocol.decode(i).enqueued_at or 0) - int(protocol.decode(i).id.rsplit(":", 1)[1])
        for i in redis_conn.lrange("beat-in", 0, -1)
    )
    print(f"ticks {len(ticks)}, lag median {lags[len(lags) // 2]:.3f} s, max {lags[-1]:.3f} s")


def test_misfire_policies_after_every_hub_was_down(
    make_hub: Callable[[], HubProc], redis_url: str, redis_conn: redis.Redis
) -> None:
    hub = make_hub()
    setup_task(hub, redis_url)
    for policy in ("skip", "once", "all"):
        add_schedule(hub, policy, misfire=policy)
    wait_for(lambda: all(runs(redis_conn, p) >= 2 for p in ("skip", "once", "all")))
    hub.kill()
    # The last tick each schedule claimed before the outage (a claimed tick that the
    # kill kept from being pushed is replayed after the restart: it counts as before).
    before = {
        p: int(float(redis_conn.hget(keys.hub_schedule_state(p), "last_tick") or 0))
        for p in ("skip", "once", "all")
    }
    time.sleep(10)  # every hub down for 10 s (> 3 leases: a downtime, not a handover)
    hub.start()
    wait_for(lambda: redis_conn.hget(keys.HUB_LEADER_INFO, "misfire_before"))
    end_of_outage = float(redis_conn.hget(keys.HUB_LEADER_INFO, "misfire_before") or 0)
    after = {p: runs(redis_conn, p) for p in ("skip", "once", "all")}
    wait_for(lambda: all(runs(redis_conn, p) >= after[p] + 3 for p in after))
    hub.stop()

    ticks = ticks_by_schedule(redis_conn)
    last_missed = int(end_of_outage)  # the latest tick at or before the outage's end
    for policy in ("skip", "once", "all"):
        got = ticks[policy]
        assert len(got) == len(set(got)) == runs(redis_conn, policy)
        early = [t for t in got if t <= before[policy]]
        missed = [t for t in got if before[policy] < t <= last_missed]
        late = [t for t in got if t > last_missed]
        assert early == list(range(early[0], before[policy] + 1)), (policy, got)
        assert late == list(range(last_missed + 1, late[-1] + 1)), (policy, got)
        expected = {
            "skip": [],
            "once": [last_missed],
            "all": list(range(before[policy] + 1, last_missed + 1)),
        }[policy]
        assert missed == expected, (policy, before[policy], end_of_outage, got)
        assert last_missed - before[policy] >= 9  # the outage did miss ticks
