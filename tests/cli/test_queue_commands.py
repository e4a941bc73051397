"""`gridq push` and `gridq dlq` against a real Redis, through the real console entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import redis

from gridq import protocol


def run(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridq.cli.main", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_push_items_stdin_and_tasks(redis_conn: redis.Redis, redis_url: str) -> None:
    r = run("push", "q1", "a", "b", "c", "--redis-url", redis_url)
    assert r.returncode == 0, r.stderr
    assert "pushed 3" in r.stdout
    # FIFO: the first item given is the first a worker takes (right end).
    assert redis_conn.lrange("q1", 0, -1) == [b"c", b"b", b"a"]
    r = run("push", "q2", "-", "--json", env={"GRIDQ_REDIS_URL": redis_url}, stdin=b"1\n2\n\n3\n")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pushed"] == 3
    r = run("push", "q3", "--task", "add", "[2, 3]", "--redis-url", redis_url)
    job = protocol.decode(redis_conn.rpop("q3"))
    assert (job.task, job.args) == ("add", [2, 3])


def test_push_wrong_password_is_one_clear_line(make_redis) -> None:
    srv = make_redis("the-right-one")
    r = run("push", "q", "x", "--redis-url", f"redis://:not-it-zq9@127.0.0.1:{srv.port}/0")
    assert r.returncode != 0
    assert "WRONGPASS" in r.stderr
    assert "not-it-zq9" not in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_no_redis_configured_is_a_clear_error(tmp_path) -> None:
    env = {"GRIDQ_STATE_DIR": str(tmp_path), "GRIDQ_REDIS_URL": ""}
    r = run("push", "q", "x", env=env)
    assert r.returncode != 0 and "no Redis" in r.stderr and "Traceback" not in r.stderr


def test_dlq_list_retry_purge(redis_conn: redis.Redis, redis_url: str) -> None:
    from gridq.keys import QueueKeys

    k = QueueKeys("dq")
    for i in range(3):
        redis_conn.lpush(
            k.dead,
            protocol.dead_record(
                f"item-{i}".encode(),
                job_id=f"j{i}",
                task=None,
                reason="r",
                error_type="ValueError",
                message=f"bad {i}",
            ),
        )
    r = run("dlq", "list", "dq", "--json", "--redis-url", redis_url)
    assert r.returncode == 0, r.stderr
    dead = json.loads(r.stdout)
    assert [d["id"] for d in dead] == ["j2", "j1", "j0"]
    r = run("dlq", "list", "dq", "--redis-url", redis_url)
    assert "ValueError" in r.stdout
    r = run("dlq", "retry", "dq", "--limit", "2", "--redis-url", redis_url)
    assert "moved 2" in r.stdout
    assert redis_conn.lrange("dq", 0, -1) == [b"item-1", b"item-0"]
    r = run("dlq", "purge", "dq", "--yes", "--json", "--redis-url", redis_url)
    assert json.loads(r.stdout)["purged"] == 1
    assert redis_conn.llen(k.dead) == 0


def test_every_command_has_help_with_an_example() -> None:
    from gridq.cli.main import COMMANDS

    for name in COMMANDS:
        r = run(name, "--help")
        assert r.returncode == 0, f"{name}: {r.stderr}"
        assert "xample" in r.stdout, f"`gridq {name} --help` shows no example"
