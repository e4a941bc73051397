"""API refusals: without a token every path but /health (and the public API description,
/docs and /openapi.json: hub/config.py public_docs) refuses; the node token and a node's
own secret never open the admin API; the viewer token reads and changes nothing.
schemathesis generates the calls. The failed-login limit (429, tests/hub/test_hub_security.py)
is off here: these tests make hundreds of refused calls from one address on purpose."""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from gridq.hub.main import create_app
from tests.hub.hub_helpers import ADMIN_H, JOIN_H, node_info, settings_for

PUBLIC = {"/health", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"}


def _calls(
    app: Any, headers: dict[str, str] | None, admin_only: bool
) -> list[tuple[str, str, int]]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen: list[tuple[str, str, int]] = []
    for op in (r.ok() for r in schema.get_all_operations()):  # type: ignore[union-attr]
        # The node protocols (gridq's and GridCore's) take the join token, by design.
        node_api = op.path.startswith(("/api/node/", "/gridnode/"))
        if op.path in PUBLIC or (admin_only and node_api):
            continue

        @given(case=op.as_strategy())
        @settings(
            max_examples=3, deadline=None, database=None, derandomize=True,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def run(case: Any) -> None:
            case.headers = {}
            r = case.call(headers=headers or {})
            seen.append((case.method.upper(), case.path, r.status_code))

        run()
    return seen


def test_no_token_refused_everywhere(redis_conn: Any, redis_url: str) -> None:
    app = create_app(settings_for(redis_url=redis_url, auth_fail_limit=0), background=False)
    with TestClient(app) as c:
        paths = c.get("/openapi.json").json()["paths"]
        assert c.get("/health").status_code == 200
    calls = _calls(app, None, admin_only=False)
    assert {p for _, p, _ in calls} == set(paths) - PUBLIC
    bad = [c for c in calls if c[2] not in (401, 403)]
    assert not bad, bad


def test_wrong_and_node_credentials_refused_on_admin_api(redis_conn: Any, redis_url: str) -> None:
    app = create_app(settings_for(redis_url=redis_url, auth_fail_limit=0), background=False)
    with TestClient(app) as c:
        r = c.post("/api/node/register", json={"info": node_info()}, headers=JOIN_H)
        secret = r.json()["secret"]
        assert c.get("/api/tasks", headers=ADMIN_H).status_code == 200
    for headers in (
        JOIN_H,
        {"Authorization": f"Bearer {secret}"},
        {"Authorization": "Bearer " + "x" * 32},
        {"Authorization": ADMIN_H["Authorization"].replace("Bearer ", "Basic ")},
    ):
        calls = _calls(app, headers, admin_only=True)
        assert len(calls) > 20
        bad = [c for c in calls if c[2] not in (401, 403)]
        assert not bad, (headers["Authorization"][:12], bad)


VIEWER = "view-Zr84kPq2MxW7cT"


def test_viewer_reads_and_changes_nothing(redis_conn: Any, redis_url: str) -> None:
    app = create_app(
        settings_for(redis_url=redis_url, viewer_token=VIEWER, auth_fail_limit=0),
        background=False,
    )
    calls = _calls(app, {"Authorization": f"Bearer {VIEWER}"}, admin_only=True)
    writes = [c for c in calls if c[0] not in ("GET", "HEAD")]
    reads = [c for c in calls if c[0] in ("GET", "HEAD")]
    assert len(writes) > 10 and len(reads) > 10
    assert not [c for c in writes if c[2] != 403], writes
    assert not [c for c in reads if c[2] in (401, 403)], reads
