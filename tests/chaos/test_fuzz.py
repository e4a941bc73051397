"""Fuzzing: random bytes and near-valid envelopes into the decoder and into a real worker.

The decoder may only raise MalformedJob; raw items pass through byte for byte. A running
`gridq worker` fed a fuzzed batch does not crash, dead-letters every malformed item (and
every envelope naming an unknown task) with a reason, and runs everything else."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridq import protocol
from tests.support import wait_for
from tests.support.stack import GRIDQ

FIELDS = ["gridq", "id", "task", "args", "kwargs", "attempt", "enqueued_at", "retries",
          "timeout", "priority", "raw"]  # fmt: skip

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """A valid envelope with a few fields removed, retyped or added; sometimes truncated."""
    body: dict[str, Any] = {
        "gridq": 1,
        "id": draw(st.text(min_size=1, max_size=12)),
        "task": draw(st.sampled_from(["echo", "nosuch"])),
        "args": draw(st.lists(json_scalars, max_size=3)),
        "kwargs": {},
        "attempt": 0,
        "enqueued_at": 1.0,
    }
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(FIELDS + ["extra"]))
        action = draw(st.sampled_from(["drop", "set"]))
        if action == "drop" and key != "gridq":
            body.pop(key, None)
        else:
            body[key] = draw(json_values)
    # A tiny positive timeout would make a valid job time out and retry: not a decoder case.
    t = body.get("timeout")
    if isinstance(t, int | float) and not isinstance(t, bool) and 0 < t < 60:
        body["timeout"] = 60
    # Retries with backoff would slow the batch down; echo never fails anyway.
    raw = json.dumps(body).encode()
    if draw(st.integers(0, 9)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


items = (
    st.binary(max_size=64)
    | near_valid()
    | st.builds(
        lambda t, a: protocol.encode(t, a),
        st.sampled_from(["echo", "nosuch"]),
        st.lists(json_scalars, max_size=3),
    )
)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _base64(v: Any) -> bool:
    try:
        base64.b64decode(v, validate=True)
    except ValueError:
        return False
    return True


# docs/protocol.md's envelope table, field by field (absent fields take their default).
FIELD_RULES: dict[str, Any] = {
    "gridq": lambda v: _int(v) and v == 1,
    "id": lambda v: isinstance(v, str) and v != "",
    "task": lambda v: v is None or (isinstance(v, str) and v != ""),
    "args": lambda v: isinstance(v, list),
    "kwargs": lambda v: isinstance(v, dict),
    "attempt": lambda v: _int(v) and v >= 0,
    "enqueued_at": lambda v: v is None or _number(v),
    "retries": lambda v: v is None or (_int(v) and v >= 0),
    "timeout": lambda v: v is None or (_number(v) and v > 0),
    "priority": lambda v: _int(v) and 0 <= v <= 9,
    "raw": lambda v: isinstance(v, str) and _base64(v),
}


def spec_kind(item: bytes) -> tuple[str, dict[str, Any]]:
    """What docs/protocol.md says an item is, written from its text, not from
    gridq.protocol: ("raw", {}), ("malformed", body) or ("envelope", body)."""
    if not item.startswith(b"{"):  # "whose first byte is `{`"
        return "raw", {}
    try:
        body = json.loads(item.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        return "raw", {}
    if not isinstance(body, dict) or "gridq" not in body:
        return "raw", {}
    if "id" not in body or not all(rule(body[k]) for k, rule in FIELD_RULES.items() if k in body):
        return "malformed", body
    return "envelope", body


@pytest.mark.parametrize(
    "item",
    [
        b'{"gridq": true, "id": "a", "task": "t"}',  # not an integer version
        b'{"gridq": 1.0, "id": "a", "task": "t"}',
        b' {"gridq": 1, "id": "a", "task": "t"}',  # leading whitespace: raw
        b'{"gridq": 1, "id": "a", "task": "t"}',
    ],
)
def test_the_documented_edges(item: bytes) -> None:
    """The two edges the oracle found undocumented: now written down and decided."""
    kind, _ = spec_kind(item)
    try:
        job = protocol.decode(item)
    except protocol.MalformedJob:
        assert kind == "malformed"
        return
    assert kind == ("raw" if job.raw is not None else "envelope")


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(item=st.binary(max_size=256) | near_valid())
def test_decode_follows_the_documented_format(item: bytes) -> None:
    kind, body = spec_kind(item)
    try:
        job = protocol.decode(item)
    except protocol.MalformedJob as exc:
        assert kind == "malformed" and str(exc), (kind, item)
        return
    assert kind != "malformed", f"accepted a malformed envelope: {item!r}"
    if kind == "raw":
        assert (job.raw, job.task) == (item, None)
    elif "raw" in body:  # a raw item waiting for a retry
        assert (job.raw, job.task, job.id) == (base64.b64decode(body["raw"]), None, body["id"])
    else:
        assert job.raw is None and (job.id, job.task) == (body["id"], body.get("task"))
        assert (job.args, job.kwargs) == (body.get("args", []), body.get("kwargs", {}))


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(task=st.text(min_size=1, max_size=10), args=st.lists(json_scalars, max_size=4))
def test_valid_envelopes_round_trip(task: str, args: list[Any]) -> None:
    job = protocol.decode(protocol.encode(task, args))
    assert job.task == task and job.args == args and not job.is_raw


APP = """
from gridq.worker import App

app = App()


@app.task(retries=0)
def echo(*args, **kwargs):
    return "echo"


@app.default
def fallback(*args, **kwargs):
    return "default"
"""


def expected(item: bytes) -> str:
    """The worker's documented verdict, from spec_kind (not from the decoder under test):
    malformed envelopes and envelopes naming a task the app lacks go dead, the rest run."""
    kind, body = spec_kind(item)
    if kind == "malformed":
        return "dead"
    if kind == "envelope" and "raw" not in body and body.get("task") not in (None, "echo"):
        return "dead"  # unknown task
    return "ok"


@pytest.fixture
def fuzz_worker(redis_server: Any, tmp_path: Path) -> Iterator[tuple[redis.Redis, Any]]:
    (tmp_path / "fuzzapp.py").write_text(APP)
    r = redis_server.client()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
    env.update(
        PYTHONPATH=str(tmp_path),
        INPUT_REDIS_URL=redis_server.url,
        INPUT_QUEUE="fuzz-in",
        OUTPUT_QUEUE="fuzz-out",
        INSTANCE_ID="fuzz-0",
    )
    for k in r.scan_iter("*fuzz-*"):
        r.delete(k)
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [GRIDQ, "worker", "fuzzapp:app", "--concurrency", "4"],
        env=env, cwd=tmp_path, stdout=log, stderr=log,
    )  # fmt: skip
    wait_for(lambda: r.zcard("gridq:q:{fuzz-in}:consumers") >= 1, 30)
    yield r, proc
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()
    print((tmp_path / "worker.log").read_text()[-2000:], file=sys.stderr)


def test_worker_survives_fuzzed_batches(fuzz_worker: tuple[redis.Redis, Any]) -> None:
    r, proc = fuzz_worker
    seen = {"dead": 0, "ok": 0, "batches": 0}

    @settings(
        max_examples=5, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(batch=st.lists(items, min_size=30, max_size=80))
    def run(batch: list[bytes]) -> None:
        want_dead = sum(expected(i) == "dead" for i in batch)
        want_ok = len(batch) - want_dead
        dead0, out0 = r.llen("gridq:q:{fuzz-in}:dead"), r.llen("fuzz-out")
        r.lpush("fuzz-in", *batch)

        def new(key: str, before: int) -> list[bytes]:
            n = r.llen(key) - before
            return list(r.lrange(key, 0, n - 1)) if n > 0 else []

        def ok_count() -> int:
            # Dead envelope jobs also get a "status": "error" result object: count only ok.
            return sum(
                o == b"default" or json.loads(o).get("status") == "ok"
                for o in new("fuzz-out", out0)
            )

        wait_for(
            lambda: (
                len(new("gridq:q:{fuzz-in}:dead", dead0)) >= want_dead and ok_count() >= want_ok
            ),
            30,
        )
        time.sleep(0.3)  # anything extra would show now
        assert proc.poll() is None, "the worker crashed"
        new_dead = new("gridq:q:{fuzz-in}:dead", dead0)
        assert len(new_dead) == want_dead
        for rec in map(json.loads, new_dead):
            assert rec["reason"] and rec["error"], rec
        assert ok_count() == want_ok
        seen["dead"] += want_dead
        seen["ok"] += want_ok
        seen["batches"] += 1

    run()
    assert proc.poll() is None
    assert seen["dead"] > 10 and seen["ok"] > 10, seen
    assert r.llen("fuzz-in") == 0
