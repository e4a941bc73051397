"""gridq.worker.celery without a worker: queue depth on a real Redis, checks, argv."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from gridq.celery_depth import celery_queue_depth, celery_queue_depth_detail
from gridq.errors import ConfigError
from gridq.worker.celery.checks import pool_name, run_checks
from gridq.worker.celery.command import build_argv
from gridq.worker.celery.settings import CelerySettings, load_celery_settings


def _app(url: str = "redis://127.0.0.1:1/0", **conf: Any) -> Celery:
    app = Celery("unit", broker=url, set_as_current=False)
    app.conf.update(conf)
    return app


# --- depth -------------------------------------------------------------------------


def test_depth_counts_every_priority_list_and_unacked(
    redis_url: str, redis_conn: redis.Redis
) -> None:
    app = _app(redis_url, broker_transport_options={"priority_steps": list(range(10))})
    with app.connection() as conn, conn.Producer() as prod:
        for pri in (0, 0, 1, 5, 9, 9, 9):
            app.send_task("t.x", queue="depthq", priority=pri, producer=prod)
        app.send_task("t.x", queue="otherq", priority=3, producer=prod)
    # kombu's own keys: the bare name for step 0, name + "\x06\x16" + step otherwise.
    keys = sorted(k for k in redis_conn.keys("depthq*"))
    assert keys == [b"depthq", b"depthq\x06\x161", b"depthq\x06\x165", b"depthq\x06\x169"]
    d = celery_queue_depth_detail(redis_conn, "depthq")
    assert d["by_priority"] == {0: 2, 1: 1, 5: 1, 9: 3}
    assert d["waiting"] == 7 and d["unacked"] == 0
    # kombu's own count agrees (queue_declare(passive) uses Channel._size).
    with app.connection() as conn:
        assert conn.default_channel.queue_declare("depthq", passive=True).message_count == 7

    # Delivered-not-acked messages live in kombu's "unacked" hash, tagged by routing key.
    redis_conn.hset("unacked", "tag1", json.dumps([{"body": "x"}, "depthq", "depthq"]))
    redis_conn.hset("unacked", "tag2", json.dumps([{"body": "x"}, "", "depthq"]))
    redis_conn.hset("unacked", "tag3", json.dumps([{"body": "x"}, "otherq", "otherq"]))
    assert celery_queue_depth(redis_conn, "depthq") == 9
    assert celery_queue_depth(redis_conn, "depthq", include_unacked=False) == 7
    assert celery_queue_depth(redis_conn, "otherq") == 2
    assert celery_queue_depth(redis_conn, "absent") == 0


def test_depth_default_priority_steps_and_prefix(redis_url: str, redis_conn: redis.Redis) -> None:
    # kombu's default steps [0, 3, 6, 9]: priority 5 lands in step 3's list.
    app = _app(redis_url, broker_transport_options={"global_keyprefix": "pfx:"})
    with app.connection() as conn, conn.Producer() as prod:
        for pri in (0, 5, 9):
            app.send_task("t.x", queue="dq", priority=pri, producer=prod)
    d = celery_queue_depth_detail(redis_conn, "dq", global_keyprefix="pfx:")
    assert d["by_priority"] == {0: 1, 3: 1, 9: 1}
    assert celery_queue_depth(redis_conn, "dq") == 0  # without the prefix: other keys


def test_depth_module_imports_no_celery() -> None:
    code = (
        "import sys; import gridq.celery_depth, gridq.worker.celery, gridq.worker; "
        "import gridq.worker.celery.command, gridq.worker.celery.limits, gridq.cli.celery_cmd; "
        "assert 'celery' not in sys.modules and 'kombu' not in sys.modules, sorted(sys.modules); "
        # The wrapper sets PROMETHEUS_MULTIPROC_DIR for prefork before this is first imported.
        "assert 'prometheus_client' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_names() -> None:
    import gridq.worker.celery as gc
    import gridq.worker.celery.command as command
    from gridq import celery_depth

    assert gc.main is command.main and gc.build_argv is command.build_argv
    assert gc.celery_queue_depth is celery_depth.celery_queue_depth
    assert callable(gc.install)
    with pytest.raises(AttributeError):
        _ = gc.no_such_name


# --- checks ------------------------------------------------------------------------


def _codes(app: Celery, pool: str = "threads") -> dict[str, str]:
    return {f.code: f.level for f in run_checks(app, pool)}


def test_visibility_timeout_below_hard_limit_is_an_error_with_acks_late() -> None:
    app = _app(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_time_limit=120,
        broker_transport_options={"visibility_timeout": 60},
    )
    findings = run_checks(app, "threads")
    err = [f for f in findings if f.code == "visibility_timeout"]
    assert err and err[0].level == "error"
    assert "60 s" in err[0].message and "120 s" in err[0].message and "twice" in err[0].message
    assert "\n" not in err[0].line()


def test_visibility_timeout_per_task_limit_and_warning_without_acks_late() -> None:
    app = _app(broker_transport_options={"visibility_timeout": 30})

    @app.task(time_limit=45)
    def long() -> None: ...

    assert _codes(app)["visibility_timeout"] == "warning"
    app.conf.broker_transport_options = {"visibility_timeout": 100}
    assert "visibility_timeout" not in _codes(app)


def test_default_visibility_timeout_is_kombus_hour() -> None:
    app = _app(task_acks_late=True, task_reject_on_worker_lost=True, task_time_limit=7200)
    assert _codes(app)["visibility_timeout"] == "error"


def test_acks_late_without_reject_on_worker_lost_warns() -> None:
    app = _app(task_acks_late=True, task_time_limit=10)
    assert _codes(app)["reject_on_worker_lost"] == "warning"
    app.conf.task_reject_on_worker_lost = True
    assert "reject_on_worker_lost" not in _codes(app)

    app2 = _app(task_time_limit=10)

    @app2.task(acks_late=True)
    def late() -> None: ...

    findings = [f for f in run_checks(app2, "threads") if f.code == "reject_on_worker_lost"]
    assert findings and "late" in findings[0].message


def test_time_limits_under_threads_enforced_or_refused() -> None:
    app = _app(task_soft_time_limit=5)
    assert _codes(app, "threads")["time_limits"] == "info"
    assert _codes(app, "solo")["time_limits"] == "info"
    assert "time_limits" not in _codes(app, "prefork")
    off = {f.code: f.level for f in run_checks(app, "threads", enforce_time_limits=False)}
    assert off["time_limits"] == "error"  # never dropped silently


def test_pool_names() -> None:
    from celery.concurrency.thread import TaskPool

    assert pool_name("threads") == pool_name(TaskPool) == "threads"
    assert pool_name("processes") == pool_name(None) == "prefork"


# --- the node's command line --------------------------------------------------------


def _settings(**env: str) -> CelerySettings:
    # Values given by their environment names, as the node sets them (GRIDQ_X is field x).
    return load_celery_settings(**{k.removeprefix("GRIDQ_").lower(): v for k, v in env.items()})


def test_build_argv_from_env() -> None:
    app = _app()
    env = _settings(INPUT_QUEUE="q1,q2", INSTANCE_ID="inst-7", GRIDQ_WORKER_CONCURRENCY="8")
    argv = build_argv(["worker", "--loglevel", "INFO"], app, env)
    assert argv == [
        "worker", "--loglevel", "INFO", "--pool", "threads", "--concurrency", "8",
        "--queues", "q1,q2", "--hostname", "inst-7",
    ]  # fmt: skip
    # Flags win over the environment; GRIDQ_WORKER_POOL=processes means prefork.
    argv = build_argv(["worker", "-Pprefork", "-c", "2", "-Q", "a"], app, env)
    assert "--concurrency" not in argv and "--queues" not in argv and "--pool" not in argv
    prefork = _settings(GRIDQ_WORKER_POOL="processes")
    assert build_argv([], app, prefork)[-2:] == ["--pool", "prefork"]
    # The app's own explicit setting beats the threads default.
    app.conf.worker_pool = "solo"
    assert build_argv([], app, _settings())[-2:] == ["--pool", "solo"]


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("GRIDQ_CELERY_CHECKS", "maybe", "celery_checks"),
        ("GRIDQ_CELERY_TIME_LIMITS", "0", "celery_time_limits"),
        ("GRIDQ_METRICS_PORT", "ninety", "metrics_port"),
        ("GRIDQ_WORKER_POOL", "gevent", "worker_pool"),
        ("GRIDQ_WORKER_CONCURRENCY", "0", "worker_concurrency"),
        ("INPUT_REDIS_URL", "http://:pw@h/0", "INPUT_REDIS_URL"),
    ],
)
def test_settings_refuse_bad_values(var: str, value: str, named: str) -> None:
    # Once silently replaced by defaults; now a clear error naming the setting.
    with pytest.raises(ConfigError) as err:
        _settings(**{var: value})
    assert named in str(err.value) and "pw" not in str(err.value)


def test_settings_accept_case_and_blank() -> None:
    s = _settings(GRIDQ_CELERY_CHECKS="WARN", GRIDQ_WORKER_POOL=" Processes ")
    assert s.celery_checks == "warn" and s.celery_pool == "prefork"
    assert _settings(GRIDQ_CELERY_TIME_LIMITS="off").enforce_time_limits is False
    assert "pw" not in repr(_settings(INPUT_REDIS_URL="redis://:pw@h/0"))


def test_wrapper_refuses_bad_setting_before_loading_the_app() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gridq.worker.celery", "-A", "no_such_module:app", "worker"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GRIDQ_CELERY_CHECKS": "sometimes"},
    )
    assert r.returncode == 3
    assert r.stderr.startswith("gridq: error: invalid configuration: celery_checks"), r.stderr


def test_wrapper_refuses_broker_on_command_line() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridq.worker.celery",
            "-A",
            "x:app",
            "-b",
            "redis://:pw@h/0",
            "worker",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 3
    assert "environment" in r.stderr or "CELERY_BROKER_URL" in r.stderr
    assert "pw" not in r.stderr


# --- queue stats through a Redis outage ----------------------------------------------


def test_stats_flusher_keeps_counts_and_logs_an_outage_twice(
    redis_binary: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from gridq.keys import QueueKeys
    from gridq.worker.celery.stats import Flusher, StatsBuffer
    from tests.support import RedisServer

    srv = RedisServer(redis_binary, tmp_path, password="stats-pw")
    srv.start()
    buf = StatsBuffer()
    flusher = Flusher(srv.url, buf)  # not started: flushed by hand, no timing involved
    try:
        buf.add("sq", "ok")
        flusher.flush()
        srv.stop()
        caplog.set_level(logging.WARNING, logger="gridq.worker.celery")
        for outcome in ("ok", "failed", "dead"):
            buf.add("sq", outcome)
            flusher.flush()  # fails: the counts stay in the buffer
        srv.start()
        flusher.flush()
        flusher.flush()
        stats = srv.client().hgetall(QueueKeys("sq").stats)
    finally:
        srv.stop()
    # The restarted server is empty (no persistence): what it holds is exactly what
    # was counted during the outage, kept and written once Redis was back.
    assert stats == {b"processed": b"1", b"failed": b"1", b"dead": b"1"}
    lines = [r.getMessage() for r in caplog.records if r.name == "gridq.worker.celery"]
    assert len(lines) == 2, lines  # one when Redis went away, one when it came back
    assert "cannot write queue stats" in lines[0] and "again after" in lines[1]
    assert all("stats-pw" not in line for line in lines)
