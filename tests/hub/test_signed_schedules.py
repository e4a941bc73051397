"""Jobs the hub pushes itself (schedules) are signed when it has GRIDQ_SIGNING_KEY."""

from __future__ import annotations

import json

import anyio
import pytest
import redis

from gridq import protocol, signing
from gridq.hub.models import TaskSpec
from gridq.hub.models_schedules import Payload
from gridq.hub.store.schedule_push import Pusher

KEY = "hub-signing-key-4f9XpQ2m"


def test_scheduled_envelopes_are_signed_raw_items_untouched(
    redis_conn: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDQ_SIGNING_KEY", KEY)
    pusher = Pusher(2.0)
    task = TaskSpec(name="rep", command=["x"], input_redis=redis_url, input_queue="rep-in")
    job = Payload.model_validate({"job": {"task": "build", "args": ["daily"]}})
    try:
        assert anyio.run(pusher.push, task, job, "j1")
        assert anyio.run(pusher.push, task, Payload(item="raw-text"), "j2")
    finally:
        pusher.close()
    raw, envelope = redis_conn.lrange("rep-in", 0, -1)
    assert raw == b"raw-text"
    assert protocol.decode(envelope).sig is not None
    assert signing.verify_body(json.loads(envelope), [KEY.encode()]) is None
