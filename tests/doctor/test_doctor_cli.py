"""`gridq doctor` end to end against a real hub (uvicorn) and real redis-servers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from doctor_helpers import ADMIN

from gridq.cli.doctor_cmd import doctor
from gridq.doctor.runner import summary
from gridq.queue import Queue


@pytest.fixture(autouse=True)
def _no_ambient(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for var in ("GRIDQ_HUB_URL", "GRIDQ_HUB_TOKEN", "GRIDQ_REDIS_URL", "GRIDQ_HUB_BIND"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GRIDQ_STATE_DIR", str(tmp_path / "nostack"))


def run(*args: str) -> tuple[int, dict[str, Any]]:
    res = CliRunner().invoke(doctor, [*args, "--json"])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res.exit_code, json.loads(res.output)


def find(body: dict[str, Any], name: str, target_part: str = "") -> dict[str, Any]:
    for c in body["checks"]:
        if c["name"] == name and target_part in c["target"]:
            return c
    raise AssertionError(
        f"no {name} [{target_part}] in {[(c['name'], c['target']) for c in body['checks']]}"
    )


def test_wrong_token(live_hub: Any) -> None:
    code, body = run("--hub-url", live_hub.url, "--token", "definitely-wrong-token")
    assert code == 1
    c = find(body, "hub.token")
    assert c["status"] == "fail" and "the token is wrong" in c["saw"]
    assert "definitely-wrong-token" not in json.dumps(body)


def test_task_redis_password_changed_after_registration(live_hub: Any, make_redis: Any) -> None:
    srv = make_redis("first-pass-abc123")
    url = f"redis://:first-pass-abc123@127.0.0.1:{srv.port}/0"
    with live_hub.admin() as c:
        r = c.post(
            "/api/tasks",
            json={
                "name": "resize",
                "image": "example/resize:1",
                "input_redis": url,
                "input_queue": "resize-in",
            },
        )
        assert r.status_code in (200, 201), r.text
    srv.client().config_set("requirepass", "second-pass-xyz789")
    code, body = run("--hub-url", live_hub.url, "--token", ADMIN, "--window", "0")
    assert code == 1
    c = find(body, "redis.credentials", "task resize")
    assert c["status"] == "fail" and "WRONGPASS" in c["saw"]
    text = json.dumps(body)
    assert "first-pass-abc123" not in text and "second-pass" not in text
    # The hub's own Redis is fine.
    assert find(body, "redis.credentials", "hub")["status"] == "ok"


def test_queue_no_task_reads_and_evicting_task_redis(live_hub: Any, make_redis: Any) -> None:
    srv = make_redis(None, "--maxmemory-policy", "allkeys-lru", "--appendonly", "yes")
    with live_hub.admin() as c:
        r = c.post(
            "/api/tasks",
            json={
                "name": "thumbs",
                "image": "example/t:1",
                "input_redis": srv.url,
                "input_queue": "thumbs",
            },
        )
        assert r.status_code in (200, 201), r.text
    Queue.from_url(srv.url, "thumb").enqueue("thumbs", 1)
    code, body = run("--hub-url", live_hub.url, "--token", ADMIN, "--window", "0")
    assert code == 1
    assert find(body, "redis.maxmemory-policy", "task thumbs")["status"] == "fail"
    unread = find(body, "queue.unread", str(srv.port))
    assert unread["status"] == "fail" and "'thumb'" in unread["saw"] and "'thumbs'" in unread["fix"]
    # One task: doctor TASK.
    code, body = run("thumbs", "--hub-url", live_hub.url, "--token", ADMIN, "--window", "0")
    assert code == 1 and all(
        "task thumbs" in c["target"] or "hub" in c["target"] for c in body["checks"]
    )
    code, body = run("nosuch", "--hub-url", live_hub.url, "--token", ADMIN, "--window", "0")
    assert code == 1 and find(body, "task.exists")["status"] == "fail"


def test_api_doctor_and_summary(live_hub: Any) -> None:
    with live_hub.admin() as c:
        r = c.get("/api/doctor", params={"window": 0})
    assert r.status_code == 200
    body = r.json()
    # ok is the verdict of the checks: false exactly when one of them failed.
    assert body["checks"]
    assert body["ok"] is not any(c["status"] == "fail" for c in body["checks"]), body
    line = summary(body["checks"])
    assert line == body["summary"] and line.startswith("doctor:")
    assert "\n" not in line


def test_no_hub_configured() -> None:
    code, body = run()
    assert code == 1 and find(body, "hub.configured")["status"] == "fail"


def test_table_output(live_hub: Any) -> None:
    res = CliRunner().invoke(doctor, ["--hub-url", live_hub.url, "--token", "wrong-token-value"])
    assert res.exit_code == 1
    assert "hub.token" in res.output and "the token is wrong" in res.output and "fix" in res.output
