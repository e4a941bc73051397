"""Workflows (issue #15): chain, group, chord on a real redis-server, with in-thread
workers and real `gridq worker` processes (SIGKILLed for the chaos test)."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any

import pytest

import gridq
from gridq import Failure, chain, chord, group
from gridq.jobs import JobFailed
from gridq.queue import Queue
from gridq.worker import App
from tests.support import wait_for


def two_apps(url: str) -> tuple[App, App]:
    return App(input_url=url, input_queue="wa"), App(input_url=url, input_queue="wb")


def test_chain_of_five_steps_across_two_queues(redis_url, start_worker):
    a, b = two_apps(redis_url)

    @a.task
    def add(x: int, y: int) -> int:
        return x + y

    @b.task
    def mul(x: int, y: int) -> int:
        return x * y

    start_worker(a)
    start_worker(b)
    h = chain(add.s(1, 2), mul.s(10), add.s(5), mul.s(2), add.s(-1)).delay()
    assert h.queue == "wa"
    assert h.get(timeout=30) == ((1 + 2) * 10 + 5) * 2 - 1
    assert h.status() == "succeeded"


def test_chain_step_dead_fails_the_final_handle(redis_url, start_worker):
    a, b = two_apps(redis_url)

    @a.task(retries=0)
    def boom(x: int) -> int:
        raise ValueError(f"no {x}")

    @b.task
    def never(x: int) -> int:
        raise AssertionError("must not run")

    start_worker(a)
    start_worker(b)
    h = chain(boom.s(7), never.s()).delay()
    assert h.status() in ("waiting", "dead")
    with pytest.raises(JobFailed) as ei:
        h.get(timeout=30)
    assert ei.value.error_type == "ValueError" and "no 7" in ei.value.error


def test_chord_with_two_failing_members_sees_two_failures(redis_url, redis_conn, start_worker):
    a, b = two_apps(redis_url)

    @a.task(retries=0)
    def maybe(i: int) -> int:
        if i in (3, 7):
            raise RuntimeError(f"member {i} broke")
        return i * i

    @b.task
    def summarize(results: list[Any], tag: str) -> dict[str, Any]:
        fails = [
            (i, r.error_type, r.error) for i, r in enumerate(results) if isinstance(r, Failure)
        ]
        return {"ok": [r for r in results if not isinstance(r, Failure)], "fails": fails, "t": tag}

    start_worker(a)
    start_worker(b)
    h = chord(group(maybe.s(i) for i in range(10)), summarize.s("x")).delay()
    out = h.get(timeout=30)
    assert out["fails"] == [
        [3, "RuntimeError", "member 3 broke"],
        [7, "RuntimeError", "member 7 broke"],
    ]
    assert out["ok"] == [i * i for i in range(10) if i not in (3, 7)]
    assert out["t"] == "x"


def test_group_results_in_order_and_failures_in_place(redis_url, start_worker):
    a, b = two_apps(redis_url)

    @a.task(retries=0)
    def sq(i: int) -> int:
        if i == 2:
            raise KeyError("two")
        return i * i

    @b.task
    def neg(i: int) -> int:
        return -i

    start_worker(a)
    start_worker(b)
    h = group([sq.s(i) for i in range(4)], neg.s(9)).delay()
    res = h.get(timeout=30)
    assert res[:2] == [0, 1] and res[3:] == [9, -9]
    assert res[2] == Failure("KeyError", "'two'")


def test_cancelled_member_reports_a_failure(redis_url, redis_conn, start_worker):
    a, b = two_apps(redis_url)

    @a.task
    def one(i: int) -> int:
        return i

    @b.task
    def cb(results: list[Any]) -> list[str]:
        return [type(r).__name__ for r in results]

    h = chord([one.s(1), one.s(2)], cb.s()).delay()
    member = Queue(redis_conn, "wa").job(f"{h.id.rsplit('.', 1)[0]}.1")
    assert member.cancel()
    start_worker(a)  # its claim drops the cancelled member, which reports a Failure
    start_worker(b)
    assert h.get(timeout=30) == ["int", "Failure"]


def test_member_reported_twice_counts_once(redis_url, redis_conn):
    """At-least-once: a member whose report runs again (crash before its ack) does not
    count twice, and the callback is enqueued once."""
    from gridq import wfstate
    from gridq.canvas import Signature

    sig_a = Signature("t", (1,), {}, redis_url, "wa")
    h = chord([sig_a, sig_a], Signature("cb", (), {}, redis_url, "wb")).delay()
    assert redis_conn.llen("wa") == 2  # no worker: the members just wait
    wf_id = h.id.rsplit(".", 1)[0]
    meta = {"q": "wb", "s": wf_id, "x": h.id, "k": "chord"}
    first = wfstate.Step({**meta, "i": 0}, True, "1")
    for _ in range(3):
        wfstate.report(redis_conn, [first])
    assert redis_conn.llen("wb") == 0  # one of two members: nothing fired
    assert h.status() == "waiting"
    second = wfstate.Step({**meta, "i": 1}, True, "2")
    for _ in range(3):
        wfstate.report(redis_conn, [second, first])
    items = redis_conn.lrange("wb", 0, -1)
    assert len(items) == 1 and b'"args":[[1,2]]' in items[0]
    assert h.status() == "queued"


GROUP_APP = """
from gridq.worker import App

app = App()

@app.task
def double(i):
    return 2 * i
"""


def test_group_of_1000_with_three_worker_processes(redis_url, redis_conn, spawn_worker):
    env = {"INPUT_REDIS_URL": redis_url, "INPUT_QUEUE": "wg", "GRIDQ_WORKER_LEASE_SECONDS": "2"}
    for _ in range(3):
        spawn_worker(GROUP_APP, env=env)
    app = App(input_url=redis_url, input_queue="wg")

    @app.task
    def double(i: int) -> int:
        return 2 * i

    h = group(double.s(i) for i in range(1000)).delay()
    assert h.get(timeout=120) == [2 * i for i in range(1000)]
    wf_id = h.id
    assert redis_conn.scard(Queue(redis_conn, "wg").keys.wf_done(wf_id)) == 1000


# A worker app that counts in Redis (what the test reads afterwards).
MARKS_APP = """
import os, time
import redis
from gridq import Failure
from gridq.worker import App

app = App()
marks = redis.Redis.from_url(os.environ["INPUT_REDIS_URL"])
"""

CHAOS_MEMBERS = (
    MARKS_APP
    + """
@app.task
def member(i):
    marks.incr("member_runs")
    time.sleep(0.03)
    return i
"""
)

CHAOS_CALLBACK = (
    MARKS_APP
    + """
@app.task
def collect(results):
    marks.incr("chord_runs")
    marks.set("chord_len", len(results))
    marks.set("chord_failures", sum(isinstance(r, Failure) for r in results))
    return len(results)
"""
)


def test_chaos_chord_of_2000_while_workers_are_sigkilled(redis_url, redis_conn, spawn_worker):
    env = {"INPUT_REDIS_URL": redis_url, "INPUT_QUEUE": "wm", "GRIDQ_WORKER_LEASE_SECONDS": "1"}
    args = ("--concurrency", "4")
    workers = [spawn_worker(CHAOS_MEMBERS, *args, env=env) for _ in range(3)]
    # The callback's own worker is not killed: a chord enqueues its callback exactly
    # once; the callback job itself runs at-least-once, like every job.
    spawn_worker(CHAOS_CALLBACK, env={**env, "INPUT_QUEUE": "wc"})
    members = App(input_url=redis_url, input_queue="wm")
    cbapp = App(input_url=redis_url, input_queue="wc")

    @members.task
    def member(i: int) -> int:
        return i

    @cbapp.task
    def collect(results: list[Any]) -> int:
        return len(results)

    h = chord(group(member.s(i) for i in range(2000)), collect.s()).delay()
    kills = 0
    end = time.monotonic() + 180
    while h.status() != "succeeded" and time.monotonic() < end:
        time.sleep(2)
        if h.status() == "succeeded":
            break
        victim = workers[kills % 3]
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        workers[kills % 3] = spawn_worker(CHAOS_MEMBERS, *args, env=env)
        kills += 1
    assert h.get(timeout=60) == 2000
    runs = int(redis_conn.get("member_runs") or 0)
    print(f"chaos: {kills} SIGKILLs, {runs} member runs for 2000 members")
    assert runs >= 2000
    assert kills >= 1
    time.sleep(1.5)  # a second firing would have been picked up by now
    assert redis_conn.get("chord_runs") == b"1"
    assert redis_conn.get("chord_len") == b"2000"
    assert redis_conn.get("chord_failures") == b"0"
    assert all(p.poll() is None for p in workers)  # the restarted ones still serve


def test_docs_example_runs_as_written(redis_url, tmp_path):
    import os
    import re
    import sys
    from pathlib import Path

    from tests.worker.conftest import ROOT, gridq_cmd

    doc = (Path(ROOT) / "docs" / "workflows.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S)
    assert code is not None
    (tmp_path / "canvas_demo.py").write_text(code.group(1))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GRIDQ_") and k not in ("INPUT_QUEUE", "OUTPUT_QUEUE")
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
        INPUT_REDIS_URL=redis_url,
        INPUT_QUEUE="demo",
    )
    workers = [
        subprocess.Popen(
            [*gridq_cmd(), f"canvas_demo:{name}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in ("app", "reports")
    ]
    try:
        out = subprocess.run(
            [sys.executable, "canvas_demo.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        for p in workers:
            p.kill()
            p.wait(5)
    assert out.returncode == 0, out.stderr
    expected = re.findall(r"print\(.*\)  # (.*)\n", code.group(1))
    assert out.stdout.splitlines() == expected


@pytest.mark.parametrize("name", ["STEP", "FAIL"])
def test_workflow_scripts_take_every_key_through_keys(name: str) -> None:
    from gridq import wfstate
    from tests import test_lua_keys

    key = f"wfstate.{name}"
    test_lua_keys.SCRIPTS[key] = getattr(wfstate, name)
    try:
        test_lua_keys.test_script_takes_every_key_through_keys(key)
    finally:
        del test_lua_keys.SCRIPTS[key]


def test_cancel_a_waiting_chain(redis_url, redis_conn, start_worker):
    a, b = two_apps(redis_url)

    @a.task
    def slow(x: int) -> int:
        time.sleep(0.5)
        return x

    @b.task
    def last(x: int) -> int:
        redis_conn.incr("last_ran")
        return x

    h = chain(slow.s(1), last.s()).delay()
    assert h.status() == "waiting"
    assert h.cancel()
    start_worker(a)
    start_worker(b)
    with pytest.raises(gridq.JobCancelled):
        h.get(timeout=30)
    first = Queue(redis_conn, "wa").job(h.id.rsplit(".", 1)[0] + ".0")
    assert first.get(timeout=30) == 1
    wait_for(
        lambda: (
            redis_conn.llen("wb") == 0 and not redis_conn.hlen(Queue(redis_conn, "wb").keys.running)
        )
    )
    assert redis_conn.get("last_ran") is None


def test_group_handle_pickles_and_revives_failures(redis_url, start_worker):
    import pickle

    a, _ = two_apps(redis_url)

    @a.task(retries=0)
    def fail_odd(i: int) -> int:
        if i % 2:
            raise ZeroDivisionError("odd")
        return i

    start_worker(a)
    h = pickle.loads(pickle.dumps(group(fail_odd.s(i) for i in range(3)).delay()))
    assert h.get(timeout=30) == [0, Failure("ZeroDivisionError", "odd"), 2]


def test_fired_envelope_keeps_user_data_that_looks_like_fields(redis_url, start_worker):
    a, b = two_apps(redis_url)
    tricky = '"enqueued_at":1, \x00gridq-wf-value\x00'

    @a.task
    def first(s: str) -> str:
        return s

    @b.task
    def second(prev: str, s: str, enqueued_at: int = 0) -> list[Any]:
        return [prev, s, enqueued_at]

    start_worker(a)
    start_worker(b)
    h = chain(first.s(tricky), second.s(tricky, enqueued_at=7)).delay()
    assert h.get(timeout=30) == [tricky, tricky, 7]
    assert h.info()["enqueued_at"] > 1_000_000_000


def test_malformed_workflow_metadata_settles_and_says_why(
    redis_conn, redis_url, start_worker, caplog
):
    from gridq import protocol

    a, _ = two_apps(redis_url)

    @a.task
    def echo(x: int) -> int:
        return x

    q = Queue(redis_conn, "wa")
    bad = protocol.encode("echo", [5], job_id="bad-wf", result_ttl=60, wf={"s": "x", "q": "{no}"})
    q.push_items([bad, protocol.encode("echo", [1], job_id="bad-wf2", result_ttl=60, wf="oops")])  # type: ignore[arg-type]
    start_worker(a)
    wait_for(lambda: q.stats()["processed"] == 1 and q.stats()["dead"] == 1, 30)
    assert "'wf' must be an object" in q.dead_letters()[0]["error"]
    assert "malformed workflow metadata" in caplog.text


def test_signature_is_plain_data_and_hides_the_password():
    from gridq.canvas import Signature

    app = App(input_url="redis://:s3cret@localhost:6379/0", input_queue="wa")

    @app.task(priority=3)
    def add(x: int, y: int) -> int:
        return x + y

    sig = add.s(1, y=2)
    assert (sig.task, sig.args, sig.kwargs, sig.queue) == ("add", (1,), {"y": 2}, "wa")
    assert sig.options["priority"] == 3
    other = sig.set(queue="wb", retries=2)
    assert (other.queue, other.options["retries"], sig.queue) == ("wb", 2, "wa")
    assert Signature.from_dict(other.to_dict()) == other
    assert "s3cret" not in repr(other)
    with pytest.raises(TypeError, match="unknown signature option"):
        sig.set(countdown=3)
    with pytest.raises(TypeError, match="must be signatures"):
        chain(sig, group(sig))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same Redis URL"):
        chain(sig, Signature("add", (), {}, "redis://elsewhere:6379/0", "wa"))
