"""Schedules over REST (real Redis, in-process hub): validation, CRUD, run now, and
the claim/push steps the ticker uses: fenced, once per tick, replay-safe."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from hub_helpers import ADMIN_H, task_body

from gridq import keys, protocol


def sched(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "tick", "task": "square", "every": 5, "payload": {"item": "7"}}
    body.update(kw)
    return body


@pytest.fixture
def api(client: TestClient, redis_url: str) -> TestClient:
    r = client.post("/api/tasks?validate=false", json=task_body(redis_url), headers=ADMIN_H)
    assert r.status_code == 201, r.text
    return client


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (sched(cron="61 * * * *", every=None), "cron"),
        (sched(cron="* * *", every=None), "cron"),
        (sched(task="nope"), "task"),
        (sched(cron="* * * * *", every=None, timezone="Mars/Olympus"), "timezone"),
        (sched(colour="red"), "colour"),
        (sched(misfire="sometimes"), "misfire"),
        (sched(every=0), "every"),
        (sched(payload={"item": "x", "job": {"task": "add"}}), "payload"),
        (sched(name="a:b"), "name"),
    ],
)
def test_bad_bodies_get_422_naming_the_field(
    api: TestClient, body: dict[str, Any], field: str
) -> None:
    r = api.post("/api/schedules", json=body, headers=ADMIN_H)
    assert r.status_code == 422, r.text
    assert any(d["field"].split(".")[0] == field for d in r.json()["detail"]), r.json()


def test_cron_and_every_together_or_neither_is_422(api: TestClient) -> None:
    for body in (sched(cron="* * * * *"), sched(every=None)):
        r = api.post("/api/schedules", json=body, headers=ADMIN_H)
        assert r.status_code == 422 and "cron" in r.text, r.text


def test_create_list_patch_pause_delete(api: TestClient) -> None:
    r = api.post("/api/schedules", json=sched(), headers=ADMIN_H)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["every"] == 5 and out["misfire"] == "skip" and out["timezone"] == "UTC"
    assert out["next_run"] % 5 == 0 and out["last_run"] is None and out["last_job_id"] is None
    assert api.post("/api/schedules", json=sched(), headers=ADMIN_H).status_code == 409

    r = api.patch(
        "/api/schedules/tick",
        json={"cron": "0 3 * * *", "timezone": "Europe/Berlin"},
        headers=ADMIN_H,
    )
    assert r.status_code == 200, r.text
    assert r.json()["cron"] == "0 3 * * *" and r.json()["every"] is None
    bad = api.patch("/api/schedules/tick", json={"cron": "nope"}, headers=ADMIN_H)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "cron"
    bad = api.patch("/api/schedules/tick", json={"task": "gone"}, headers=ADMIN_H)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "task"

    r = api.patch("/api/schedules/tick", json={"paused": True}, headers=ADMIN_H)
    assert r.json()["paused"] is True and r.json()["next_run"] is None
    names = [s["name"] for s in api.get("/api/schedules", headers=ADMIN_H).json()]
    assert names == ["tick"]
    assert api.delete("/api/schedules/tick", headers=ADMIN_H).status_code == 204
    assert api.get("/api/schedules/tick", headers=ADMIN_H).status_code == 404
    assert api.delete("/api/schedules/tick", headers=ADMIN_H).status_code == 404


def test_run_now_pushes_a_job_envelope(api: TestClient, redis_conn: redis.Redis) -> None:
    body = sched(payload={"job": {"task": "add", "args": [1, 2]}})
    assert api.post("/api/schedules", json=body, headers=ADMIN_H).status_code == 201
    r = api.post("/api/schedules/tick/run", headers=ADMIN_H)
    assert r.status_code == 200, r.text
    jid = r.json()["job_id"]
    job = protocol.decode(redis_conn.rpop("square-in"))  # type: ignore[arg-type]
    assert job.id == jid and job.task == "add" and job.args == [1, 2]
    out = api.get("/api/schedules/tick", headers=ADMIN_H).json()
    assert out["last_job_id"] == jid and out["runs"] == 1 and out["last_run"] is not None
    metrics = api.get("/metrics", headers=ADMIN_H).text
    assert 'gridq_schedule_runs_total{schedule="tick"} 1.0' in metrics


def test_needs_the_admin_token(api: TestClient) -> None:
    assert api.get("/api/schedules").status_code == 401


def test_claim_is_fenced_once_per_tick_and_replay_pushes_once(
    api: TestClient, redis_conn: redis.Redis
) -> None:
    """The ticker's steps, driven by hand: two leaders' tokens, a crash after the claim."""
    from gridq.hub.schedule_ticker import Ticker

    assert api.post("/api/schedules", json=sched(every=1), headers=ADMIN_H).status_code == 201
    app: Any = api.app
    store, leader = app.state.store, app.state.leader
    portal = api.portal
    assert portal is not None
    assert portal.call(leader.step) is True
    token = leader.token
    tick = int(float(redis_conn.hget(keys.hub_schedule_state("tick"), "last_tick") or 0)) + 1
    jid = f"sched:tick:{tick}"
    # A stale token claims nothing.
    assert portal.call(store.schedules.claim, "0:someone", "tick", tick, jid) == -1
    # Claimed once; the "crash": never pushed. A second claim of the tick is refused.
    assert portal.call(store.schedules.claim, token, "tick", tick, jid) == 1
    assert portal.call(store.schedules.claim, token, "tick", tick, jid) == 0
    assert redis_conn.zrange(keys.HUB_SCHEDULES_PENDING, 0, -1) == [jid.encode()]
    ticker = Ticker(store.schedules, leader)
    portal.call(ticker.replay)
    portal.call(ticker.replay)  # nothing pending any more
    # The push itself is idempotent too: a stale leader pushing the same id adds nothing.
    task = portal.call(store.schedules.task, "square")
    spec = portal.call(store.schedules.get, "tick")
    assert portal.call(store.schedules.pusher.push, task, spec.payload, jid) is False
    assert redis_conn.lrange("square-in", 0, -1) == [b"7"]
    assert redis_conn.zcard(keys.HUB_SCHEDULES_PENDING) == 0
    out = api.get("/api/schedules/tick", headers=ADMIN_H).json()
    assert out["last_job_id"] == jid and out["runs"] == 1


def test_ticker_skips_paused_and_runs_late_ticks_once(
    api: TestClient, redis_conn: redis.Redis
) -> None:
    """The ticker's pass, driven by hand; time passing is simulated by moving the
    schedule's last claimed tick back."""
    import time

    from gridq.hub.schedule_ticker import Ticker

    app: Any = api.app
    store, leader = app.state.store, app.state.leader
    portal = api.portal
    assert portal is not None
    assert portal.call(leader.step) is True
    body = sched(every=1, misfire="all", paused=True, payload={"job": {"task": "beat"}})
    assert api.post("/api/schedules", json=body, headers=ADMIN_H).status_code == 201
    ticker = Ticker(store.schedules, leader)
    state = keys.hub_schedule_state("tick")

    redis_conn.hset(state, "last_tick", time.time() - 5)
    portal.call(ticker.pass_once, leader.token)
    assert redis_conn.llen("square-in") == 0  # paused: no tick

    assert api.patch("/api/schedules/tick", json={"paused": False}, headers=ADMIN_H).is_success
    portal.call(ticker.pass_once, leader.token)
    assert redis_conn.llen("square-in") == 0  # resumed: ticks start after now

    last = time.time() - 3.5
    redis_conn.hset(state, "last_tick", last)
    portal.call(ticker.pass_once, leader.token)
    portal.call(ticker.pass_once, leader.token)  # a second pass claims nothing again
    ids = [protocol.decode(i).id for i in reversed(redis_conn.lrange("square-in", 0, -1))]
    ticks = [int(i.rsplit(":", 1)[1]) for i in ids]
    assert len(ticks) >= 3 and ticks[0] == int(last) + 1
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))
    out = api.get("/api/schedules/tick", headers=ADMIN_H).json()
    assert out["runs"] == len(ticks) and out["last_job_id"] == ids[-1]


def test_an_unreachable_task_redis_holds_up_only_its_own_schedule(
    api: TestClient, redis_conn: redis.Redis, redis_url: str
) -> None:
    import time

    from gridq.hub.schedule_ticker import Ticker
    from gridq.ports import free_port

    dead = f"redis://:pw-Zq81xx@127.0.0.1:{free_port()}/0"
    body = task_body(dead, "gone", input_queue="gone-in")
    assert api.post("/api/tasks?validate=false", json=body, headers=ADMIN_H).status_code == 201
    for name, task in (("good", "square"), ("bad", "gone")):
        s = sched(name=name, task=task, every=1, misfire="all")
        assert api.post("/api/schedules", json=s, headers=ADMIN_H).status_code == 201
        redis_conn.hset(keys.hub_schedule_state(name), "last_tick", time.time() - 2.5)
    app: Any = api.app
    store, leader = app.state.store, app.state.leader
    portal = api.portal
    assert portal is not None
    assert portal.call(leader.step) is True
    ticker = Ticker(store.schedules, leader)
    portal.call(ticker.pass_once, leader.token)
    portal.call(ticker.pass_once, leader.token)
    assert redis_conn.llen("square-in") >= 2  # the good one ran its ticks
    pending = redis_conn.zrange(keys.HUB_SCHEDULES_PENDING, 0, -1)
    assert len(pending) == 1 and pending[0].startswith(b"sched:bad:")  # claimed, waits

    r = api.post("/api/schedules/bad/run", headers=ADMIN_H)
    assert r.status_code == 503 and "gone" in r.text and "pw-Zq81xx" not in r.text
    assert api.get("/health").status_code == 200  # the hub's own Redis is fine
