"""Redis checks against real redis-servers set up broken on purpose."""

from __future__ import annotations

import re
from typing import Any

from doctor_helpers import by_name

from gridq.doctor.redis_checks import check_redis
from gridq.doctor.runner import summary


def test_healthy_redis_is_ok_but_warns_without_persistence(redis_url: str) -> None:
    res = check_redis(redis_url, "test")
    assert by_name(res, "redis.reachable").status == "ok"
    assert by_name(res, "redis.credentials").status == "ok"
    assert by_name(res, "redis.version").status == "ok"
    assert by_name(res, "redis.maxmemory-policy").status == "ok"
    # The round trip depends on the machine's load; the verdict must follow the figure
    # the check reports (warn from 25 ms), whatever it is.
    lat = by_name(res, "redis.latency")
    m = re.fullmatch(r"round trip ([0-9.]+) ms \(median of 5 PINGs\)", lat.saw)
    assert m, lat.saw
    assert lat.status == ("warn" if float(m[1]) >= 25.0 else "ok"), lat
    # The fixture runs with --save "" --appendonly no: nothing survives a restart.
    p = by_name(res, "redis.persistence")
    assert p.status == "warn" and "AOF" in p.fix


def test_persistence_ok_with_aof(make_redis: Any) -> None:
    srv = make_redis(None, "--appendonly", "yes")
    assert by_name(check_redis(srv.url, "t"), "redis.persistence").status == "ok"


def test_evicting_policy_fails(make_redis: Any) -> None:
    srv = make_redis(None, "--maxmemory-policy", "allkeys-lru", "--maxmemory", "100mb")
    res = check_redis(srv.url, "t")
    c = by_name(res, "redis.maxmemory-policy")
    assert c.status == "fail"
    assert "allkeys-lru" in c.saw and "noeviction" in c.fix
    assert "fail" in summary(res)


def test_wrong_password_is_wrongpass_and_masked(make_redis: Any) -> None:
    srv = make_redis("s3cret-right")
    url = f"redis://:s3cret-wrong@127.0.0.1:{srv.port}/0"
    res = check_redis(url, "")
    c = by_name(res, "redis.credentials")
    assert c.status == "fail" and "WRONGPASS" in c.saw
    assert "password" in c.fix
    text = " ".join(f"{r.saw} {r.fix} {r.target}" for r in res)
    assert "s3cret-wrong" not in text and "***" in text


def test_missing_password_is_noauth(make_redis: Any) -> None:
    srv = make_redis("s3cret-right")
    c = by_name(check_redis(f"redis://127.0.0.1:{srv.port}/0", "t"), "redis.credentials")
    assert c.status == "fail" and "NOAUTH" in c.saw


def test_password_given_to_redis_without_one(redis_server: Any) -> None:
    url = f"redis://:unneeded@127.0.0.1:{redis_server.port}/0"
    c = by_name(check_redis(url, "t"), "redis.credentials")
    assert c.status == "fail" and "has none set" in c.saw


def test_unreachable_names_refused() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = check_redis(f"redis://127.0.0.1:{port}/0", "t", timeout=1)
    assert len(res) == 1
    assert res[0].status == "fail" and "refused" in res[0].saw and "Start Redis" in res[0].fix
