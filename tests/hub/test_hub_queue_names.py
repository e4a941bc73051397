"""Queue names with braces are refused at registration (key layout 2: gridq/keys.py)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hub_helpers import ADMIN_H, task_body


@pytest.mark.parametrize("field", ["input_queue", "output_queue"])
@pytest.mark.parametrize("name", ["a{b}", "{jobs}", "x}"])
def test_braces_in_a_queue_name_are_a_422_that_says_why(
    client: TestClient, redis_url: str, field: str, name: str
) -> None:
    r = client.post("/api/tasks", json=task_body(redis_url, **{field: name}), headers=ADMIN_H)
    assert r.status_code == 422, r.text
    err = next(d for d in r.json()["detail"] if d["loc"][-1] == field)
    assert "Redis Cluster" in err["msg"] and "'{' or '}'" in err["msg"]


def test_patch_refuses_braces_too(client: TestClient, redis_url: str) -> None:
    assert client.post("/api/tasks", json=task_body(redis_url), headers=ADMIN_H).status_code < 300
    name = task_body(redis_url)["name"]
    r = client.patch(f"/api/tasks/{name}", json={"input_queue": "q{1}"}, headers=ADMIN_H)
    assert r.status_code == 422 and "Redis Cluster" in r.text
