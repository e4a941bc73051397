"""The dashboard over HTTP (no browser): sessions, CSRF, roles, pages, chart history and
the dead-letter browser, on a real hub app and a real Redis."""

from __future__ import annotations

import re
import time

import redis
from fastapi.testclient import TestClient
from ui_helpers import ADMIN, ADMIN_H, JOIN_H, VIEWER, VIEWER_H, add_dead, login, task_body

from gridq import keys
from gridq.hub.ui import history
from gridq.keys import QueueKeys

PAGES = ["/ui/", "/ui/tasks", "/ui/tasks/square", "/ui/nodes", "/ui/doctor", "/ui/schedules"]


def _grid(client: TestClient, redis_url: str) -> str:
    r = client.post("/api/tasks?validate=false", json=task_body(redis_url), headers=ADMIN_H)
    assert r.status_code == 201, r.text
    info = {
        "hostname": "box1",
        "arch": "linux/amd64",
        "cpus": 4,
        "memory_mb": 8000,
        "runtime": "process",
        "parallelism": 4,
        "version": "0.1.0",
    }
    r = client.post("/api/node/register", json={"info": info}, headers=JOIN_H)
    assert r.status_code == 200, r.text
    node_id: str = r.json()["node_id"]
    return node_id


def test_root_redirects_and_pages_need_a_session(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    for path in [*PAGES, "/ui/nodes/n1"]:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/ui/login?next=")
    assert client.get("/ui/api/series").status_code == 401


def test_login_cookie_and_logout(client: TestClient) -> None:
    bad = client.post("/ui/login", data={"token": "not-the-token-at-all"}, follow_redirects=False)
    assert bad.status_code == 401 and "not-the-token-at-all" not in bad.text
    r = client.post("/ui/login", data={"token": ADMIN, "next": "/ui/nodes"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/nodes"
    cookie = r.headers["set-cookie"].lower()
    for attr in ("httponly", "samesite=strict", "max-age=28800", "path=/ui"):
        assert attr in cookie
    assert "secure" not in cookie  # plain http
    assert ADMIN not in r.headers["set-cookie"]
    page = client.get("/ui/tasks")
    assert page.status_code == 200 and ADMIN not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    csrf = login(client)
    out = client.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/ui/tasks", follow_redirects=False).status_code == 303


def test_cookie_secure_behind_https(client: TestClient) -> None:
    r = client.post(
        "/ui/login",
        data={"token": ADMIN},
        headers={"X-Forwarded-Proto": "https"},
        follow_redirects=False,
    )
    assert "secure" in r.headers["set-cookie"].lower()


def test_open_redirect_refused(client: TestClient) -> None:
    r = client.post(
        "/ui/login", data={"token": ADMIN, "next": "//evil.example/x"}, follow_redirects=False
    )
    assert r.headers["location"] == "/ui/"


def test_every_page_renders(client: TestClient, redis_url: str) -> None:
    node_id = _grid(client, redis_url)
    login(client)
    for path in [*PAGES, f"/ui/nodes/{node_id}"]:
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        assert ADMIN not in r.text and VIEWER not in r.text
    assert "square" in client.get("/ui/tasks").text
    assert "box1" in client.get("/ui/nodes").text
    assert client.get("/ui/tasks/nope").status_code == 404
    assert client.get("/ui/nodes/nope").status_code == 404
    assert "No schedules yet" in client.get("/ui/schedules").text


def test_schedules_page_shows_and_changes_schedules(client: TestClient, redis_url: str) -> None:
    _grid(client, redis_url)
    body = {"name": "nightly", "task": "square", "cron": "0 3 * * *", "payload": {"item": "7"}}
    assert client.post("/api/schedules", json=body, headers=ADMIN_H).status_code == 201
    csrf = login(client)
    page = client.get("/ui/schedules").text
    assert "nightly" in page and "0 3 * * *" in page and "active" in page
    assert client.post("/ui/schedules/nightly/pause", follow_redirects=False).status_code == 403
    ok = client.post("/ui/schedules/nightly/pause", data={"csrf": csrf}, follow_redirects=False)
    assert ok.status_code == 303
    assert client.get("/api/schedules/nightly", headers=ADMIN_H).json()["paused"] is True
    client.post("/ui/schedules/nightly/resume", data={"csrf": csrf}, follow_redirects=False)
    assert client.get("/api/schedules/nightly", headers=ADMIN_H).json()["paused"] is False
    ran = client.post("/ui/schedules/nightly/run", data={"csrf": csrf}, follow_redirects=False)
    assert ran.status_code == 303
    job_id = client.get("/api/schedules/nightly", headers=ADMIN_H).json()["last_job_id"]
    assert job_id and job_id in client.get("/ui/schedules").text
    assert redis.Redis.from_url(redis_url).lrange(task_body(redis_url)["input_queue"], 0, -1)


def test_actions_need_csrf_and_admin(
    make_client: object, client: TestClient, redis_url: str
) -> None:
    node_id = _grid(client, redis_url)
    csrf = login(client)
    no_token = client.post("/ui/tasks/square/pause", follow_redirects=False)
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    wrong = client.post("/ui/tasks/square/pause", data={"csrf": "x" * 43})
    assert wrong.status_code == 403
    assert client.get("/api/tasks/square", headers=ADMIN_H).json()["status"] == "active"
    other_site = client.post(
        "/ui/tasks/square/pause", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403

    ok = client.post("/ui/tasks/square/pause", data={"csrf": csrf}, follow_redirects=False)
    assert ok.status_code == 303
    assert client.get("/api/tasks/square", headers=ADMIN_H).json()["status"] == "paused"
    via_header = client.post(
        "/ui/tasks/square/resume", headers={"X-CSRF-Token": csrf}, follow_redirects=False
    )
    assert via_header.status_code == 303
    assert client.get("/api/tasks/square", headers=ADMIN_H).json()["status"] == "active"
    r = client.post("/ui/tasks/square/replicas", data={"csrf": csrf, "replicas": "3"})
    assert r.status_code == 200
    assert client.get("/api/tasks/square", headers=ADMIN_H).json()["replicas"] == 3
    assert (
        client.post("/ui/tasks/square/replicas", data={"csrf": csrf, "replicas": "-1"}).status_code
        == 422
    )
    r = client.post(f"/ui/nodes/{node_id}/stop", data={"csrf": csrf})
    assert r.status_code == 200
    assert client.get(f"/api/nodes/{node_id}", headers=ADMIN_H).json()["stop_requested"]


def test_viewer_reads_but_never_changes(client: TestClient, redis_url: str) -> None:
    _grid(client, redis_url)
    assert client.get("/api/tasks", headers=VIEWER_H).status_code == 200
    assert client.get("/api/nodes", headers=VIEWER_H).status_code == 200
    r = client.post("/api/tasks/square/pause", headers=VIEWER_H)
    assert r.status_code == 403 and VIEWER not in r.text
    assert client.delete("/api/tasks/square", headers=VIEWER_H).status_code == 403
    csrf = login(client, VIEWER)
    assert "viewer" in client.get("/ui/").text
    r = client.post("/ui/tasks/square/pause", data={"csrf": csrf})
    assert r.status_code == 403
    assert client.get("/api/tasks/square", headers=ADMIN_H).json()["status"] == "active"


def test_expired_session_goes_to_login(client: TestClient, redis_conn: redis.Redis) -> None:
    login(client)
    sessions = list(redis_conn.scan_iter(match=keys.hub_ui_session("*")))
    assert len(sessions) == 1
    ttl = redis_conn.ttl(sessions[0])
    assert 0 < ttl <= 8 * 3600
    redis_conn.pexpire(sessions[0], 1)
    time.sleep(0.01)
    r = client.get("/ui/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")


def test_session_shared_by_replicas(make_client: object, client: TestClient) -> None:
    login(client)
    other = make_client()  # type: ignore[operator]
    other.cookies.update(client.cookies)
    assert other.get("/ui/tasks", follow_redirects=False).status_code == 200


def test_history_one_sample_per_interval_and_series(
    client: TestClient, redis_url: str, redis_conn: redis.Redis
) -> None:
    _grid(client, redis_url)
    store = client.app.state.store  # type: ignore[attr-defined]
    portal = client.portal
    assert portal is not None
    q = QueueKeys("square-in")
    now = time.time() // history.SAMPLE_EVERY * history.SAMPLE_EVERY
    redis_conn.hset(q.stats, mapping={"processed": 100, "failed": 2})
    assert portal.call(history.sample_once, store, now - 20)
    assert not portal.call(history.sample_once, store, now - 19.5)  # same slot: taken
    redis_conn.hset(q.stats, mapping={"processed": 150, "failed": 7})
    redis_conn.lpush(q.pending, b"1", b"2", b"3")
    assert portal.call(history.sample_once, store, now - 10)
    s = portal.call(history.series, store, "square", 900)
    assert s["processed"] == [5.0] and s["failed"] == [0.5] and s["depth"] == [3]
    total = portal.call(history.series, store, None, 900)
    assert total["processed"] == [5.0]
    latest = portal.call(history.latest, store, None)
    assert latest["square"]["depth"] == 3 and latest["square"]["rate"] == 5.0
    login(client)
    body = client.get("/ui/api/series?window=1h&task=square").json()
    assert body["processed"] == [5.0]
    assert ">150<" in client.get("/ui/tasks").text
    # A deleted task's history goes at the next sample.
    client.delete("/api/tasks/square", headers=ADMIN_H)
    assert portal.call(history.sample_once, store, now)
    assert not redis_conn.exists(keys.hub_ui_history("square"))
    assert not redis_conn.hexists(keys.HUB_UI_LATEST, "square")


def test_dead_letter_browser(client: TestClient, redis_url: str, redis_conn: redis.Redis) -> None:
    _grid(client, redis_url)
    add_dead(redis_conn, "square-in", 30, "ValueError")
    add_dead(redis_conn, "square-in", 5, "KeyError", start=100)
    q = QueueKeys("square-in")
    csrf = login(client)
    page = client.get("/ui/tasks/square").text
    assert page.count('action="/ui/tasks/square/dead/one"') == 20
    assert "<b>KeyError</b>: bad input 104" in page and "Traceback" in page
    live = client.get("/ui/tasks/square", headers={"X-Live": "1"}).text
    assert 'action="/ui/tasks/square/dead/one"' not in live  # the refresh skips them
    filtered = client.get("/ui/tasks/square?error_type=ValueError").text
    assert filtered.count('action="/ui/tasks/square/dead/one"') == 20
    assert "<b>KeyError</b>" not in filtered
    more = client.get("/ui/tasks/square?error_type=ValueError&offset=25").text
    assert more.count('action="/ui/tasks/square/dead/one"') == 10
    found = client.get("/ui/tasks/square?job=job-KeyError-102").text
    assert "<b>dead</b> after 3 attempt(s)" in found

    # Requeue the one shown first (the newest: KeyError 104).
    import re

    idx = re.search(r'name="index" value="(\d+)"', page)
    dig = re.search(r'name="digest" value="([0-9a-f]+)"', page)
    assert idx and dig
    r = client.post(
        "/ui/tasks/square/dead/one",
        data={"csrf": csrf, "index": idx.group(1), "digest": dig.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert redis_conn.llen(q.dead) == 34 and redis_conn.lrange(q.pending, 0, -1) == [b"104"]
    again = client.post(
        "/ui/tasks/square/dead/one",
        data={"csrf": csrf, "index": idx.group(1), "digest": dig.group(1)},
    )
    assert again.status_code == 409
    r = client.post("/ui/tasks/square/dead/filtered", data={"csrf": csrf, "error_type": "KeyError"})
    assert r.status_code == 200 and "requeued 4 dead letter(s) of type KeyError" in r.text
    assert redis_conn.llen(q.dead) == 30 and redis_conn.llen(q.pending) == 5
    refused = client.post("/ui/tasks/square/dead/purge", data={"csrf": csrf, "confirm": "nope"})
    assert refused.status_code == 422 and redis_conn.llen(q.dead) == 30
    r = client.post("/ui/tasks/square/dead/all", data={"csrf": csrf})
    assert "requeued 30" in r.text and redis_conn.llen(q.pending) == 35
    add_dead(redis_conn, "square-in", 3, "OSError")
    r = client.post("/ui/tasks/square/dead/purge", data={"csrf": csrf, "confirm": "square"})
    assert "purged 3" in r.text and redis_conn.llen(q.dead) == 0
    events = client.get("/api/events", headers=ADMIN_H).json()
    assert any(e["event"] == "task square purged 3 dead letter(s)" for e in events)


def test_viewer_token_must_be_strong_and_distinct() -> None:
    import pytest
    from hub_helpers import settings_for

    from gridq.errors import ConfigError
    from gridq.hub.config import check_tokens

    with pytest.raises(ConfigError, match="GRIDQ_HUB_VIEWER_TOKEN is shorter"):
        check_tokens(settings_for(viewer_token="short"))
    with pytest.raises(ConfigError, match="GRIDQ_HUB_TOKEN and GRIDQ_HUB_VIEWER_TOKEN must differ"):
        check_tokens(settings_for(viewer_token=ADMIN))
    assert check_tokens(settings_for(viewer_token=VIEWER)) == []


def test_dead_letters_rest(client: TestClient, redis_url: str, redis_conn: redis.Redis) -> None:
    _grid(client, redis_url)
    add_dead(redis_conn, "square-in", 12, "ValueError")
    add_dead(redis_conn, "square-in", 3, "KeyError", start=100)
    base = "/api/tasks/square/dead-letters"
    page = client.get(f"{base}?limit=5", headers=VIEWER_H).json()
    assert page["total"] == 15 and page["next_offset"] == 5 and len(page["items"]) == 5
    assert page["error_types"] == ["KeyError", "ValueError"]
    first = page["items"][0]
    assert first["error_type"] == "KeyError" and "Traceback" in first["traceback"]
    only = client.get(f"{base}?error_type=KeyError&limit=50", headers=ADMIN_H).json()
    assert [i["id"] for i in only["items"]] == [f"job-KeyError-{n}" for n in (102, 101, 100)]
    one = {"index": first["index"], "digest": first["digest"]}
    assert client.post(f"{base}/requeue", json=one, headers=VIEWER_H).status_code == 403
    assert client.delete(f"{base}?confirm=square", headers=VIEWER_H).status_code == 403
    bad = client.post(f"{base}/requeue", json={"all": True, "error_type": "X"}, headers=ADMIN_H)
    assert bad.status_code == 422
    r = client.post(f"{base}/requeue", json=one, headers=ADMIN_H)
    assert r.status_code == 200 and r.json()["requeued"] == 1
    assert client.post(f"{base}/requeue", json=one, headers=ADMIN_H).status_code == 409
    r = client.post(f"{base}/requeue", json={"error_type": "KeyError"}, headers=ADMIN_H)
    assert r.json()["requeued"] == 2
    assert client.delete(base, headers=ADMIN_H).status_code == 422  # no confirmation
    assert client.delete(f"{base}?confirm=square", headers=ADMIN_H).json()["purged"] == 12
    assert client.get("/api/tasks/nope/dead-letters", headers=ADMIN_H).status_code == 404
    q = QueueKeys("square-in")
    assert redis_conn.llen(q.dead) == 0 and redis_conn.llen(q.pending) == 3


def test_assets_ship_in_the_wheel() -> None:
    """Every template and static file matches a package-data pattern of pyproject.toml
    (setuptools globs: ``*`` never crosses a ``/``), and uPlot comes with its licence."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    with open(root / "pyproject.toml", "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]["gridq.hub.ui"]
    ui = root / "hub" / "ui"
    files = [
        p.relative_to(ui).as_posix()
        for p in ui.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc")
    ]
    assert files
    missing = [
        f
        for f in files
        if not any(fnmatch.fnmatch(f, p) and f.count("/") == p.count("/") for p in patterns)
    ]
    assert not missing, f"not shipped in the wheel: {missing}"
    assert "static/vendor/uplot-1.6.32/LICENSE" in files


def test_audit_page_shows_changes_and_pages(client: TestClient, redis_url: str) -> None:
    _grid(client, redis_url)
    # 1 task create + 1 node register + 2 x 52 pause/resume = 106 entries: pages of 100.
    for _ in range(52):
        client.post("/api/tasks/square/pause", headers=ADMIN_H)
        client.post("/api/tasks/square/resume", headers=ADMIN_H)
    login(client, VIEWER)  # a viewer reads the trail too
    first = client.get("/ui/audit")
    assert first.status_code == 200
    assert "task.resume" in first.text and "square" in first.text and ADMIN not in first.text
    assert first.text.count("<tr><td>") == 100
    older = re.search(r'href="/ui/audit\?before=([0-9-]+)"', first.text)
    assert older
    second = client.get(f"/ui/audit?before={older.group(1)}")
    assert second.text.count("<tr><td>") == 6 and "task.create" in second.text
    assert "Older entries" not in second.text


def test_job_lookup_shows_the_jobs_record(client: TestClient, redis_url: str) -> None:
    from gridq.queue import Queue

    _grid(client, redis_url)
    q = Queue.from_url(redis_url, task_body(redis_url)["input_queue"])
    handle = q.enqueue("square", 4)
    login(client)
    page = client.get(f"/ui/tasks/square?job={handle.id}").text
    assert "<b>queued</b>" in page and "square" in page
    assert "No job" in client.get("/ui/tasks/square?job=no-such-job").text
