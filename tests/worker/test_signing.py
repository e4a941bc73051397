"""Signed jobs (issue 20): producers sign, a worker with a key refuses what is not
signed by one of its keys. Real redis-server, real Worker on a thread."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis

from gridq import protocol, signing
from gridq.errors import ConfigError
from gridq.queue import Queue
from gridq.worker import App
from gridq.worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
Q = "sq"
OUT = "sq-out"
KEY = "k-new-0123456789abcdef"
OLD = "k-old-0123456789abcdef"


def make_app(url: str) -> tuple[App, list[Any]]:
    app = App(input_url=url, input_queue=Q, output_url=url, output_queue=OUT)
    ran: list[Any] = []

    @app.task
    def add(a: int, b: int) -> int:
        ran.append((a, b))
        return a + b

    @app.default
    def raw(item: bytes) -> None:
        ran.append(item)

    return app, ran


def dead_reasons(r: redis.Redis) -> dict[str, str]:
    return {str(d["id"]): d["reason"] for d in Queue(r, Q).dead_letters()}


def signed_queue(r: redis.Redis, monkeypatch: pytest.MonkeyPatch, key: str) -> Queue:
    monkeypatch.setenv("GRIDQ_SIGNING_KEY", key)
    return Queue(r, Q)


def test_doc_vector_and_openssl_agree() -> None:
    """The hand-written vector in docs/protocol.md is what the code computes."""
    doc = (ROOT / "docs" / "protocol.md").read_text()
    canon = re.search(r"CANON='([^']+)'", doc)
    expected = re.search(r"expected signature: `([0-9a-f]{64})`", doc)
    assert canon and expected
    body = {
        "gridq": 1,
        "id": "job-1",
        "task": "add",
        "args": [2, 3],
        "kwargs": {"note": "café"},
        "attempt": 0,
        "enqueued_at": 1764547200.5,
    }
    assert signing.canonical(body).decode() == canon.group(1)
    key = b"correct horse battery staple"
    assert signing.signature(body, key) == expected.group(1)
    # The attempt counter and the signature itself are outside the signed bytes.
    assert signing.signature({**body, "attempt": 4, "sig": "x"}, key) == expected.group(1)
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", key.decode(), "-r"],
        input=canon.group(1).encode(),
        capture_output=True,
        check=True,
    )
    assert out.stdout.split()[0].decode() == expected.group(1)


def doc_block(lang: str, after: str) -> str:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    tail = doc[doc.index(after) :]
    m = re.search(rf"```{lang}\n(.*?)```", tail, re.S)
    assert m
    return m.group(1)


def test_doc_examples_run_and_the_worker_accepts_them(
    redis_conn: redis.Redis, redis_url: str, start_worker: Any, capsys: Any
) -> None:
    """The Python and the shell example of docs/protocol.md, as written."""
    exec(doc_block("python", "Python, standard library only"), {})
    printed = json.loads(capsys.readouterr().out)
    redis_conn.lpush(Q, json.dumps(printed))
    sh = doc_block("sh", "Shell, with `openssl` and `redis-cli`").replace("myqueue", Q)
    out = subprocess.run(
        ["bash", "-euc", sh],
        env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split()[0] == printed["sig"]
    app = App(input_url=redis_url, input_queue=Q, output_url=redis_url, output_queue=OUT)
    notes: list[str] = []

    @app.task
    def add(a: int, b: int, note: str) -> int:
        notes.append(note)
        return a + b

    key = "correct horse battery staple"
    assert start_worker(app, burst=True, signing_key=key).join() == 0
    assert notes == ["café", "café"] and Queue(redis_conn, Q).dead_letters() == []


def test_signed_runs_unsigned_and_tampered_are_dead(
    redis_conn: redis.Redis, redis_url: str, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, ran = make_app(redis_url)
    good = signed_queue(redis_conn, monkeypatch, KEY).enqueue("add", 2, 3)
    monkeypatch.delenv("GRIDQ_SIGNING_KEY")
    unsigned = Queue(redis_conn, Q).enqueue("add", 40, 2)  # no key: no sig
    # A signed envelope whose arguments were changed after signing.
    item = signing.sign_item(protocol.encode("add", [1, 1], job_id="tampered"), [KEY.encode()])
    body = json.loads(item)
    body["args"] = [1000, 1]
    redis_conn.lpush(Q, json.dumps(body).encode())
    assert start_worker(app, burst=True, signing_key=KEY).join() == 0
    assert ran == [(2, 3)]
    assert dead_reasons(redis_conn) == {unsigned: "bad signature", "tampered": "bad signature"}
    done = [json.loads(r) for r in redis_conn.lrange(OUT, 0, -1)]
    assert [r["id"] for r in done if r["status"] == "ok"] == [good]
    # The dead-letter record says why, never with a key in it.
    text = json.dumps(Queue(redis_conn, Q).dead_letters())
    assert "BadSignature" in text and KEY not in text


def test_retries_keep_the_signature_valid(
    redis_conn: redis.Redis, redis_url: str, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App(input_url=redis_url, input_queue=Q, output_url=redis_url, output_queue=OUT)
    calls: list[int] = []

    @app.task(retries=2, backoff=0.05)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 2:
            raise ValueError("not yet")
        return "done"

    @app.task(retries=0)
    def boom() -> None:
        raise ValueError("always")

    q = signed_queue(redis_conn, monkeypatch, KEY)
    # A producer in another language may leave out optional fields: the worker must
    # not add them on retry (that would change the signed bytes).
    item = signing.sign_item(
        json.dumps({"gridq": 1, "id": "minimal", "task": "flaky"}).encode(), [KEY.encode()]
    )
    q.push_items([item])
    boom_id = q.enqueue("boom")
    assert start_worker(app, burst=True, signing_key=KEY).join() == 0
    assert len(calls) == 2
    reasons = dead_reasons(redis_conn)
    assert set(reasons) == {boom_id} and reasons[boom_id] != "bad signature"
    # A dead letter requeued by retry_dead (hub, CLI) is still signed.
    assert q.retry_dead() == 1
    requeued = protocol.decode(redis_conn.lindex(Q, -1))
    assert requeued.id == boom_id and requeued.sig is not None
    assert signing.verify_body(json.loads(requeued.item), [KEY.encode()]) is None


def test_key_rotation(
    redis_conn: redis.Redis, redis_url: str, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, ran = make_app(redis_url)
    old_job = signed_queue(redis_conn, monkeypatch, OLD).enqueue("add", 1, 2)
    # The new key first: producers sign with it, the old one still verifies.
    new_job = signed_queue(redis_conn, monkeypatch, f"{KEY},{OLD}").enqueue("add", 3, 4)
    assert start_worker(app, burst=True, signing_key=f"{KEY}, {OLD}").join() == 0
    assert sorted(ran) == [(1, 2), (3, 4)]
    # Rotation finished: the old key is gone, its jobs are refused.
    ran.clear()
    again = signed_queue(redis_conn, monkeypatch, OLD).enqueue("add", 5, 6)
    assert start_worker(app, burst=True, signing_key=KEY).join() == 0
    assert ran == [] and dead_reasons(redis_conn) == {again: "bad signature"}
    assert {old_job, new_job}.isdisjoint(dead_reasons(redis_conn))


def test_raw_items_only_refused_when_required(
    redis_conn: redis.Redis, redis_url: str, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, ran = make_app(redis_url)
    Queue(redis_conn, Q).push_raw(b"raw-1")
    assert start_worker(app, burst=True, signing_key=KEY).join() == 0
    assert ran == [b"raw-1"]  # a key alone leaves raw items alone
    ran.clear()
    Queue(redis_conn, Q).push_raw(b"raw-2")
    signed = signed_queue(redis_conn, monkeypatch, KEY).enqueue("add", 1, 1)
    w = start_worker(app, burst=True, signing_key=KEY, require_signed=True)
    assert w.join() == 0
    assert ran == [(1, 1)]
    [dead] = Queue(redis_conn, Q).dead_letters()
    assert dead["reason"] == "unsigned raw item" and dead["item"] == "raw-2"
    assert dead["error_type"] == "UnsignedRawItem" and signed != dead["id"]


def test_no_key_no_check(
    redis_conn: redis.Redis, redis_url: str, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker without a key runs signed and unsigned jobs alike (the cheap path)."""
    app, ran = make_app(redis_url)
    signed_queue(redis_conn, monkeypatch, KEY).enqueue("add", 1, 2)
    monkeypatch.delenv("GRIDQ_SIGNING_KEY")
    Queue(redis_conn, Q).enqueue("add", 3, 4)
    assert start_worker(app, burst=True).join() == 0
    assert sorted(ran) == [(1, 2), (3, 4)] and app.verifier is None


def test_settings_reject_bad_keys_without_echoing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gridq.worker.settings import load_worker_settings

    monkeypatch.setenv("GRIDQ_SIGNING_KEY", "short-secret")
    with pytest.raises(ConfigError, match="shorter than 16") as exc:
        load_worker_settings()
    assert "short-secret" not in str(exc.value)
    monkeypatch.delenv("GRIDQ_SIGNING_KEY")
    with pytest.raises(ValueError, match="empty key"):
        WorkerSettings(signing_key=f"{KEY},,{OLD}")
    with pytest.raises(ValueError, match="needs GRIDQ_SIGNING_KEY"):
        WorkerSettings(require_signed=True)
    # GRIDQ_SIGNING_KEY_FILE, like every other secret, for workers and producers.
    f = tmp_path / "key"
    f.write_text(f"{KEY},{OLD}\n")
    monkeypatch.setenv("GRIDQ_SIGNING_KEY_FILE", str(f))
    s = load_worker_settings()
    assert s.signing_key is not None and s.signing_key.get_secret_value() == f"{KEY},{OLD}"
    assert signing.Signer.from_env().keys == (KEY.encode(), OLD.encode())
    assert KEY not in repr(s)
    monkeypatch.setenv("GRIDQ_SIGNING_KEY", KEY)
    with pytest.raises(ConfigError, match="both GRIDQ_SIGNING_KEY and GRIDQ_SIGNING_KEY_FILE"):
        signing.Signer.from_env()


def test_cli_push_signs(redis_conn: redis.Redis, redis_url: str) -> None:
    from tests.cli.test_queue_commands import run

    r = run(
        "push",
        Q,
        "--task",
        "add",
        "[2, 3]",
        "--redis-url",
        redis_url,
        env={"GRIDQ_SIGNING_KEY": KEY},
    )
    assert r.returncode == 0, r.stderr
    assert KEY not in r.stdout + r.stderr
    item = redis_conn.rpop(Q)
    assert item is not None
    assert signing.verify_body(json.loads(item), [KEY.encode()]) is None
    r = run("push", Q, "raw", "--redis-url", redis_url, env={"GRIDQ_SIGNING_KEY": KEY})
    assert r.returncode == 0 and redis_conn.rpop(Q) == b"raw"  # raw items stay raw


def test_processes_pool_checks_in_the_parent(
    redis_conn: redis.Redis, redis_url: str, start_worker: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """The processes pool re-imports the app in its children: the check happens once,
    in the parent, before the job is handed over."""
    mod = tmp_path / "signed_app.py"
    mod.write_text(
        "from gridq.worker import App\n"
        f"app = App(input_url={redis_url!r}, input_queue={Q!r}, output_url={redis_url!r},"
        f" output_queue={OUT!r})\n"
        "@app.task\n"
        "def add(a, b):\n"
        "    return a + b\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from gridq.worker.app import load_app

    app = load_app("signed_app:app")
    good = signed_queue(redis_conn, monkeypatch, KEY).enqueue("add", 2, 2)
    monkeypatch.delenv("GRIDQ_SIGNING_KEY")
    bad = Queue(redis_conn, Q).enqueue("add", 1, 1)
    w = start_worker(
        app, burst=True, signing_key=KEY, worker_pool="processes", worker_concurrency=1
    )
    assert w.join(60) == 0
    assert dead_reasons(redis_conn) == {bad: "bad signature"}
    done = [json.loads(r) for r in redis_conn.lrange(OUT, 0, -1)]
    assert [(r["id"], r["result"]) for r in done if r["status"] == "ok"] == [(good, 4)]
