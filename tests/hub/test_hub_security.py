"""Roles, rotation and the audit trail (docs/security.md), on a real redis-server.

The failed-login limit and TLS are tested against a real uvicorn hub in
tests/node/test_node_security.py (they need real client addresses and sockets)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from hub_helpers import ADMIN, ADMIN_H, JOIN, JOIN_H, node_info, register, settings_for, task_body

from gridq import keys
from gridq.errors import ConfigError
from gridq.hub.auth import TokenSets, identify
from gridq.hub.clientaddr import client_address, networks
from gridq.hub.config import check_tokens

VIEWER = "view-Zr84kPq2MxW7cT"
VIEWER_H = {"Authorization": f"Bearer {VIEWER}"}
ADMIN2 = "adm2-Lw93hRt6YbQz1X"
ADMIN2_H = {"Authorization": f"Bearer {ADMIN2}"}


def audit(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/audit", headers=ADMIN_H, params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_audit_records_every_kind_of_change(
    make_client: Callable[..., TestClient], redis_url: str, redis_conn: redis.Redis
) -> None:
    c = make_client(viewer_token=VIEWER)
    assert c.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H).status_code == 201
    assert c.patch("/api/tasks/square", json={"replicas": 3}, headers=ADMIN_H).status_code == 200
    assert c.post("/api/tasks/square/pause", headers=ADMIN_H).status_code == 200
    assert c.post("/api/tasks/square/resume", headers=ADMIN_H).status_code == 200
    assert c.delete("/api/tasks/square", headers=ADMIN_H).status_code == 204
    nid, secret = register(c)
    assert c.post(f"/api/nodes/{nid}/stop", headers=ADMIN_H).status_code == 200
    leave = c.post(f"/api/node/{nid}/leave", headers={"Authorization": f"Bearer {secret}"})
    assert leave.status_code == 204
    assert c.delete(f"/api/nodes/{nid}", headers=ADMIN_H).status_code == 204
    # Refused changes and reads are not changes.
    assert c.post("/api/tasks/square/pause", headers=VIEWER_H).status_code == 403
    assert c.get("/api/tasks", headers=VIEWER_H).status_code == 200

    got = [(e["actor"], e["action"], e["target"]) for e in reversed(audit(c))]
    assert got == [
        ("admin", "task.create", "square"),
        ("admin", "task.patch", "square"),
        ("admin", "task.pause", "square"),
        ("admin", "task.resume", "square"),
        ("admin", "task.delete", "square"),
        (f"node:{nid}", "node.register", nid),
        ("admin", "node.stop", nid),
        (f"node:{nid}", "node.leave", nid),
        ("admin", "node.delete", nid),
    ]
    entries = audit(c)
    assert {e["client"] for e in entries} == {"testclient"}
    by_action = {e["action"]: e for e in entries}
    assert by_action["task.create"]["token_index"] == 0
    assert by_action["node.register"]["token_index"] == 0  # of GRIDQ_NODE_TOKEN
    assert by_action["node.leave"]["token_index"] is None  # the node's own secret
    assert by_action["task.patch"]["detail"] == "fields: replicas"
    # No credential anywhere in the stored trail.
    raw = repr(redis_conn.xrange(keys.HUB_AUDIT))
    for value in (ADMIN, JOIN, VIEWER, secret):
        assert value not in raw


def test_viewer_reads_everything_and_changes_nothing(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    c = make_client(viewer_token=VIEWER)
    assert c.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H).status_code == 201
    for path in ("/api/tasks", "/api/tasks/square", "/api/nodes", "/api/events", "/api/audit"):
        assert c.get(path, headers=VIEWER_H).status_code == 200, path
    assert c.get("/metrics", headers=VIEWER_H).status_code == 200
    for method, path in (
        ("POST", "/api/tasks"),
        ("PATCH", "/api/tasks/square"),
        ("DELETE", "/api/tasks/square"),
        ("POST", "/api/tasks/square/pause"),
    ):
        r = c.request(method, path, headers=VIEWER_H, json=task_body(redis_url, "other"))
        assert r.status_code == 403, (method, path, r.text)
        assert "GRIDQ_HUB_VIEWER_TOKEN" in r.json()["detail"]
    assert c.get("/api/tasks/square", headers=ADMIN_H).json()["status"] == "active"
    # The viewer token is no node token, and the join token is no viewer.
    assert (
        c.post("/api/node/register", json={"info": node_info()}, headers=VIEWER_H).status_code
        == 401
    )
    assert c.get("/api/audit", headers=JOIN_H).status_code == 403


def test_two_admin_tokens_both_work_until_one_is_removed(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    both = make_client(token=f"{ADMIN},{ADMIN2}")
    assert both.get("/api/tasks", headers=ADMIN_H).status_code == 200
    assert both.get("/api/tasks", headers=ADMIN2_H).status_code == 200
    assert both.post("/api/tasks", json=task_body(redis_url), headers=ADMIN2_H).status_code == 201
    assert audit(both)[0]["token_index"] == 1
    # Rotation's last step: the hub restarted with the new value only.
    new_only = make_client(token=ADMIN2)
    assert new_only.get("/api/tasks", headers=ADMIN2_H).status_code == 200
    assert new_only.get("/api/tasks", headers=ADMIN_H).status_code == 401


def test_audit_since_limit_cap_and_retention(
    make_client: Callable[..., TestClient], redis_url: str, redis_conn: redis.Redis
) -> None:
    c = make_client(audit_max_entries=3)
    forty_days_ago = int((time.time() - 40 * 86_400) * 1000)
    redis_conn.xadd(keys.HUB_AUDIT, {"r": "{}"}, id=f"{forty_days_ago}-0")
    t0 = time.time()
    for i in range(5):
        body = task_body(redis_url, f"t{i}")
        assert c.post("/api/tasks", json=body, headers=ADMIN_H).status_code == 201
    entries = audit(c)
    assert [e["target"] for e in entries] == ["t4", "t3", "t2"]
    assert redis_conn.xlen(keys.HUB_AUDIT) == 3
    assert [e["target"] for e in audit(c, limit=1)] == ["t4"]
    assert len(audit(c, since=t0 - 1)) == 3
    assert audit(c, since=time.time() + 3600) == []
    # Retention alone (the cap not reached) drops the 40-day-old entry.
    redis_conn.delete(keys.HUB_AUDIT)
    redis_conn.xadd(keys.HUB_AUDIT, {"r": "{}"}, id=f"{forty_days_ago}-0")
    assert c.delete("/api/tasks/t0", headers=ADMIN_H).status_code == 204
    assert [e["action"] for e in audit(c)] == ["task.delete"]


def test_token_sets_checked_at_start() -> None:
    with pytest.raises(ConfigError) as exc:
        check_tokens(settings_for(token=f"{ADMIN},short"))
    assert "GRIDQ_HUB_TOKEN value 2 is shorter" in str(exc.value)
    assert ADMIN not in str(exc.value)
    with pytest.raises(ConfigError, match="GRIDQ_HUB_TOKEN and GRIDQ_HUB_VIEWER_TOKEN must differ"):
        check_tokens(settings_for(token=f"{ADMIN},{ADMIN2}", viewer_token=ADMIN2))
    with pytest.raises(
        ConfigError, match="GRIDQ_HUB_VIEWER_TOKEN and GRIDQ_NODE_TOKEN must differ"
    ):
        check_tokens(settings_for(viewer_token=JOIN))
    assert check_tokens(settings_for(token=f" {ADMIN} , {ADMIN2} ", viewer_token=VIEWER)) == []


def test_identify_for_a_login_form() -> None:
    tokens = TokenSets.from_settings(settings_for(token=f"{ADMIN},{ADMIN2}", viewer_token=VIEWER))
    admin2, viewer = identify(tokens, ADMIN2), identify(tokens, VIEWER)
    assert admin2 is not None and (admin2.role, admin2.token_index, admin2.actor) == (
        "admin",
        1,
        "admin",
    )
    assert viewer is not None and (viewer.role, viewer.token_index) == ("viewer", 0)
    assert identify(tokens, JOIN) is None  # the node join token logs nobody in
    assert identify(tokens, "x" * 20) is None


def test_dead_letters_requeued_and_purged_through_the_api_are_audited(
    make_client: Callable[..., TestClient], redis_url: str, redis_conn: redis.Redis
) -> None:
    c = make_client(viewer_token=VIEWER)
    assert c.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H).status_code == 201
    q = keys.QueueKeys("square-in")
    redis_conn.rpush(q.dead, *[json.dumps({"item": i, "reason": "boom"}) for i in range(3)])
    url = "/api/tasks/square/dead-letters"
    assert c.get(url, headers=VIEWER_H).status_code == 200
    assert c.post(url + "/requeue", json={"all": True}, headers=VIEWER_H).status_code == 403
    r = c.post(url + "/requeue", json={"all": True}, headers=ADMIN_H)
    assert r.status_code == 200 and r.json()["requeued"] == 3, r.text
    redis_conn.rpush(q.dead, json.dumps({"item": 9, "reason": "boom"}))
    r = c.delete(url, params={"confirm": "square"}, headers=ADMIN_H)
    assert r.status_code == 200 and r.json()["purged"] == 1, r.text
    got = [(e["actor"], e["action"], e["target"]) for e in audit(c)[:2]]
    assert got == [("admin", "dead.purge", "square"), ("admin", "dead.requeue", "square")]


def test_failed_login_counts_are_shared_by_replicas(
    make_client: Callable[..., TestClient],
) -> None:
    a, b = make_client(auth_fail_limit=3), make_client(auth_fail_limit=3)
    wrong = {"Authorization": "Bearer " + "w" * 24}
    assert [a.get("/api/tasks", headers=wrong).status_code for _ in range(3)] == [401] * 3
    r = b.get("/api/tasks", headers=ADMIN_H)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert b.get("/health").status_code == 200
    off = make_client(auth_fail_limit=0)
    assert off.get("/api/tasks", headers=ADMIN_H).status_code == 200


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        ("10.0.0.9", "6.6.6.6", [], "10.0.0.9"),  # no proxy trusted: the header is ignored
        ("127.0.0.1", "6.6.6.6, 203.0.113.7", ["127.0.0.1"], "203.0.113.7"),
        ("127.0.0.1", "203.0.113.7, 10.1.2.3", ["127.0.0.1", "10.0.0.0/8"], "203.0.113.7"),
        ("10.0.0.9", "203.0.113.7", ["127.0.0.1"], "10.0.0.9"),  # peer is no trusted proxy
        ("127.0.0.1", None, ["127.0.0.1"], "127.0.0.1"),
    ],
)
def test_client_address(peer: str, xff: str | None, trusted: list[str], expected: str) -> None:
    headers = [(b"x-forwarded-for", xff.encode())] if xff else []
    scope = {"client": (peer, 40000), "headers": headers}
    assert client_address(scope, networks(trusted)) == expected


def test_tls_settings_come_in_pairs(tmp_path: Any) -> None:
    cert = tmp_path / "hub.pem"
    cert.write_text("x")
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        settings_for(tls_cert=cert)
    with pytest.raises(ValueError, match="tls_key: no such file"):
        settings_for(tls_cert=cert, tls_key=tmp_path / "missing.key")
    with pytest.raises(ValueError, match="not an IP address or network"):
        settings_for(trusted_proxies="proxy.example")


def test_node_secret_refusals_do_not_count(make_client: Callable[..., TestClient]) -> None:
    # A 401 on a heartbeat means "register again" (e.g. after the hub lost its state),
    # not a guess: many nodes behind one address must not lock themselves out.
    c = make_client(auth_fail_limit=3)
    nid, _ = register(c)
    bad = {"Authorization": "Bearer " + "s" * 40}
    for _ in range(5):
        assert c.post(f"/api/node/{nid}/leave", headers=bad).status_code == 401
    assert c.get("/api/tasks", headers=ADMIN_H).status_code == 200


def test_sequence_steps_are_audited(make_client: Callable[..., TestClient], redis_url: str) -> None:
    c = make_client(scheduling="sequential")
    for name in ("first", "second"):
        assert (
            c.post("/api/tasks", json=task_body(redis_url, name), headers=ADMIN_H).status_code
            == 201
        )
    assert c.post("/api/tasks/next", headers=ADMIN_H).status_code == 200
    assert c.post("/api/tasks/finish", headers=ADMIN_H).status_code == 200
    got = [(e["action"], e["target"]) for e in audit(c)[:2]]
    assert got[1] == ("sequence.next", "second")
    assert got[0][0] == "sequence.finish"


def test_schedule_changes_are_audited(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    c = make_client(viewer_token=VIEWER)
    assert c.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H).status_code == 201
    body = {"name": "nightly", "task": "square", "every": 3600, "payload": {"item": "7"}}
    assert c.post("/api/schedules", json=body, headers=VIEWER_H).status_code == 403
    assert c.post("/api/schedules", json=body, headers=ADMIN_H).status_code == 201, body
    assert c.get("/api/schedules", headers=VIEWER_H).status_code == 200
    assert c.patch("/api/schedules/nightly", json={"every": 60}, headers=ADMIN_H).status_code == 200
    assert c.post("/api/schedules/nightly/run", headers=ADMIN_H).status_code == 200
    assert c.delete("/api/schedules/nightly", headers=ADMIN_H).status_code == 204
    got = [
        (e["action"], e["target"]) for e in reversed(audit(c)) if e["action"].startswith("schedule")
    ]
    assert got == [
        ("schedule.create", "nightly"),
        ("schedule.patch", "nightly"),
        ("schedule.run", "nightly"),
        ("schedule.delete", "nightly"),
    ]
