"""IDM-GridCore's own client traffic, replayed against the hub.

Written from GridCore's source (Wolido/idm-gridcore), not from gridq's:
- the GridNode requests are what gridnode/src/client.rs serialises (serde, compact,
  struct field order) and the answers are read as it deserialises them (TaskConfig's
  `image` a string, the rest optional; HeartbeatResponse's `stop_requested`);
- the GridNode's life is gridnode/src/main.rs's: register (node_id from its config,
  None the first time), heartbeat, poll GET /gridnode/task?platform=..., follow a task
  switch, stop on stop_requested, and re-register with the saved node_id after a restart;
- the user calls are README.md's curl commands, bodies byte for byte, only the Redis
  URLs replaced by the test's.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from gridcore_helpers import ADMIN, GQ_INFO, JOIN

# README.md, "4. 注册计算任务": the two task bodies, as written (Redis URLs replaced).
README_SINGLE = """{
    "name": "hea-calc",
    "image": "your-registry/hea-calc:v1.0",
    "input_redis": "redis://:password@redis-host:6379",
    "output_redis": "redis://:password@redis-host:6379",
    "input_queue": "hea:input",
    "output_queue": "hea:output"
  }"""
README_MULTI = """{
    "name": "hea-calc",
    "images": {
      "linux/amd64": "your-registry/hea-calc:v1.0-amd64",
      "linux/arm64": "your-registry/hea-calc:v1.0-arm64"
    },
    "input_redis": "redis://:password@redis-host:6379",
    "input_queue": "hea:input",
    "output_queue": "hea:output"
  }"""
README_REDIS = "redis://:password@redis-host:6379"

# gridnode/src/client.rs: TaskConfig as GridNode deserialises it.
TASK_CONFIG_KEYS = {
    "task_name",
    "image",
    "redis_url",
    "input_redis",
    "output_redis",
    "input_queue",
    "output_queue",
}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def user(hub: TestClient, method: str, path: str, body: str | None = None) -> Any:
    """A README curl: -H "Authorization: Bearer ..." (and -H Content-Type with -d)."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return hub.request(method, path, content=body, headers=headers)


class GridNode:
    """gridnode/src/client.rs's ComputeHubClient: same requests, same reading of answers."""

    def __init__(self, hub: TestClient, token: str, architecture: str) -> None:
        self.hub = hub
        self.token = token
        self.architecture = architecture
        # main.rs: the platform it asks images for.
        self.platform = {
            "x86_64": "linux/amd64",
            "aarch64": "linux/arm64",
            "arm": "linux/arm/v7",
        }.get(architecture, "linux/amd64")

    def _post(self, path: str, payload: str) -> Any:
        # reqwest's .json(): serde_json compact bytes, Content-Type application/json.
        return self.hub.post(
            path,
            content=payload.encode(),
            headers={"Authorization": f"Bearer {self.token}", "content-type": "application/json"},
        )

    def register(self, node_id: str | None, hostname: str, cpu_count: int) -> Any:
        payload = (
            f'{{"node_id":{json.dumps(node_id)},"hostname":{json.dumps(hostname)},'
            f'"architecture":{json.dumps(self.architecture)},"cpu_count":{cpu_count}}}'
        )
        return self._post("/gridnode/register", payload)

    def heartbeat(self, node_id: str, status: str, active_containers: int) -> Any:
        payload = (
            f'{{"node_id":{json.dumps(node_id)},"status":"{status}",'
            f'"active_containers":{active_containers}}}'
        )
        return self._post("/gridnode/heartbeat", payload)

    def get_task(self) -> Any:
        # format!("{}/gridnode/task?platform={}", ...): the platform unencoded.
        return self.hub.get(
            f"/gridnode/task?platform={self.platform}",
            headers={"Authorization": f"Bearer {self.token}"},
        )


def task_config(answer: Any) -> dict[str, Any] | None:
    """What GridNode can deserialise: null, or a TaskConfig whose image is a string."""
    if answer is None:
        return None
    assert isinstance(answer, dict)
    assert set(answer) == TASK_CONFIG_KEYS, answer
    assert isinstance(answer["task_name"], str) and isinstance(answer["image"], str)
    assert answer["redis_url"] is None
    for k in ("input_redis", "output_redis", "input_queue", "output_queue"):
        assert answer[k] is None or isinstance(answer[k], str)
    return answer


def test_gridnode_lifecycle_and_readme_calls(
    make_hub: Callable[..., TestClient], redis_url: str
) -> None:
    hub = make_hub(scheduling="sequential")
    single = README_SINGLE.replace(README_REDIS, redis_url)
    multi = README_MULTI.replace(README_REDIS, redis_url)

    # README's first body; the second reuses the name: 409 here (ComputeHub queued a
    # second task of the same name). Deleted first, the second body is accepted too.
    assert user(hub, "POST", "/api/tasks", single).status_code == 201
    dup = user(hub, "POST", "/api/tasks", multi)
    assert dup.status_code == 409, dup.text
    assert user(hub, "DELETE", "/api/tasks/hea-calc").status_code == 204
    assert user(hub, "POST", "/api/tasks", multi).status_code == 201
    second = single.replace('"hea-calc"', '"task-2"').replace("hea-calc:v1.0", "task-2:v1")
    assert user(hub, "POST", "/api/tasks", second).status_code == 201

    # A first start: no node_id in gridnode.toml.
    node = GridNode(hub, JOIN, "x86_64")
    r = node.register(None, "worker-01", 4)
    assert r.status_code == 200, r.text
    reg = r.json()
    assert set(reg) == {"node_id", "current_task"}
    node_id = reg["node_id"]
    assert isinstance(node_id, str) and node_id
    assert task_config(reg["current_task"]) == {
        "task_name": "hea-calc",
        "image": "your-registry/hea-calc:v1.0-amd64",
        "redis_url": None,
        "input_redis": redis_url,
        "output_redis": None,
        "input_queue": "hea:input",
        "output_queue": "hea:output",
    }
    # images by platform; a platform with neither its image nor a generic one: null.
    arm64 = GridNode(hub, JOIN, "aarch64")
    arm64_reg = arm64.register(None, "pi-4", 4).json()
    assert task_config(arm64_reg["current_task"])["image"] == (  # type: ignore[index]
        "your-registry/hea-calc:v1.0-arm64"
    )
    assert task_config(GridNode(hub, JOIN, "arm").get_task().json()) is None

    # Heartbeat: exactly {"stop_requested": bool}.
    hb = node.heartbeat(node_id, "Running", 4)
    assert hb.status_code == 200 and hb.json() == {"stop_requested": False}
    assert arm64.heartbeat(arm64_reg["node_id"], "Idle", 0).json() == {"stop_requested": False}
    polled = task_config(node.get_task().json())
    assert polled is not None and polled["task_name"] == "hea-calc"

    # The troubleshooting guide's checks: /api/nodes is a list, with GridCore's fields.
    nodes = user(hub, "GET", "/api/nodes").json()
    assert isinstance(nodes, list) and len(nodes) == 2
    mine = next(n for n in nodes if n["id"] == node_id)
    assert mine["hostname"] == "worker-01" and mine["architecture"] == "x86_64"
    assert mine["cpu_count"] == 4 and mine["runtime_status"] == "Running"
    assert mine["active_containers"] == 4 and mine["runtime"] == "gridnode"
    assert mine["status"] == "online" and RFC3339.match(mine["last_seen"]), mine
    # Its containers count as the current task's running workers.
    tasks = {t["name"]: t for t in user(hub, "GET", "/api/tasks").json()}
    assert tasks["hea-calc"]["instances"]["by_node"] == {node_id: 4}
    assert tasks["task-2"]["status"] == "waiting"

    # README "6. 完成当前任务": the answer carries ComputeHub's fields.
    fin = user(hub, "POST", "/api/tasks/finish")
    assert fin.status_code == 200, fin.text
    assert fin.json()["completed"] == "hea-calc" and fin.json()["started"] == "task-2"
    switched = task_config(node.get_task().json())
    assert switched is not None and switched["task_name"] == "task-2"
    assert switched["image"] == "your-registry/task-2:v1"
    node.heartbeat(node_id, "Running", 4)
    tasks = {t["name"]: t for t in user(hub, "GET", "/api/tasks").json()}
    assert tasks["task-2"]["instances"]["by_node"] == {node_id: 4}
    assert tasks["hea-calc"]["instances"]["running"] == 0

    # README "7. 停止计算节点": stop -> the next heartbeat says stop_requested.
    stop = user(hub, "POST", f"/api/nodes/{node_id}/stop")
    assert stop.status_code == 200, stop.text
    assert node.heartbeat(node_id, "Running", 4).json() == {"stop_requested": True}

    # Restart: the saved node_id comes back, not stopping any more.
    again = node.register(node_id, "worker-01", 4).json()
    assert again["node_id"] == node_id
    assert task_config(again["current_task"])["task_name"] == "task-2"  # type: ignore[index]
    assert node.heartbeat(node_id, "Idle", 0).json() == {"stop_requested": False}
    assert len(user(hub, "GET", "/api/nodes").json()) == 2

    # The last task finished: ComputeHub's "started": null, and GridNodes get null.
    last = user(hub, "POST", "/api/tasks/finish").json()
    assert last["completed"] == "task-2" and last["started"] is None
    assert node.get_task().json() is None


def test_next_answers_computehub_fields(
    make_hub: Callable[..., TestClient], redis_url: str
) -> None:
    hub = make_hub(scheduling="sequential")
    for name in ("task-1", "task-2"):
        body = README_SINGLE.replace(README_REDIS, redis_url).replace('"hea-calc"', f'"{name}"')
        assert user(hub, "POST", "/api/tasks", body).status_code == 201
    nxt = user(hub, "POST", "/api/tasks/next")
    assert nxt.status_code == 200, nxt.text
    assert nxt.json()["previous"] == "task-1" and nxt.json()["current"] == "task-2"


def test_gridnode_token_is_the_node_join_token(make_hub: Callable[..., TestClient]) -> None:
    hub = make_hub()
    for token in ("", "wrong-token", ADMIN):
        r = GridNode(hub, token, "x86_64").register(None, "intruder", 2)
        assert r.status_code == 401, (token, r.text)
        assert GridNode(hub, token, "x86_64").get_task().status_code == 401
    assert user(hub, "GET", "/api/nodes").json() == []


def test_unknown_and_deleted_nodes(make_hub: Callable[..., TestClient], redis_url: str) -> None:
    hub = make_hub()
    node = GridNode(hub, JOIN, "x86_64")
    # ComputeHub answers a heartbeat from an id it does not know with stop_requested false.
    assert node.heartbeat("never-registered", "Idle", 0).json() == {"stop_requested": False}
    # Parallel mode: the earliest registered task that wants workers is the current one.
    body = README_SINGLE.replace(README_REDIS, redis_url)
    assert user(hub, "POST", "/api/tasks", body).status_code == 201
    node_id = node.register(None, "box", 2).json()["node_id"]
    assert node.get_task().json()["task_name"] == "hea-calc"
    assert user(hub, "POST", "/api/tasks/hea-calc/pause").status_code == 200
    assert node.get_task().json() is None
    # Deleted by an admin: the GridNode is told to stop; with its saved id it may rejoin.
    assert user(hub, "DELETE", f"/api/nodes/{node_id}").status_code == 204
    assert node.heartbeat(node_id, "Running", 2).json() == {"stop_requested": True}
    assert node.register(node_id, "box", 2).json()["node_id"] == node_id
    assert node.heartbeat(node_id, "Idle", 0).json() == {"stop_requested": False}


def test_gridnode_cannot_take_a_gridq_nodes_id(make_hub: Callable[..., TestClient]) -> None:
    hub = make_hub()
    r = hub.post(
        "/api/node/register", json={"info": GQ_INFO}, headers={"Authorization": f"Bearer {JOIN}"}
    )
    gq_id = r.json()["node_id"]
    got = GridNode(hub, JOIN, "x86_64").register(gq_id, "thief", 2).json()["node_id"]
    assert got != gq_id
    nodes = {n["id"]: n for n in user(hub, "GET", "/api/nodes").json()}
    assert nodes[gq_id]["runtime"] == "docker" and nodes[got]["runtime"] == "gridnode"
    # A gridq node's GridCore fields, translated.
    assert nodes[gq_id]["architecture"] == "x86_64" and nodes[gq_id]["cpu_count"] == 2


def test_celery_body_without_input_queue(
    make_hub: Callable[..., TestClient], redis_url: str
) -> None:
    """docs/celery.md's body names queues, not input_queue."""
    hub = make_hub()
    body = json.dumps(
        {
            "name": "ocr",
            "kind": "celery",
            "app": "proj.celery:app",
            "input_redis": redis_url,
            "queues": ["ocr", "ocr-high"],
            "concurrency": 8,
        }
    )
    r = user(hub, "POST", "/api/tasks", body)
    assert r.status_code == 201, r.text
    assert r.json()["input_queue"] == "ocr,ocr-high"


def test_gridnode_30s_heartbeats_keep_it_online(
    make_hub: Callable[..., TestClient], redis_conn: Any
) -> None:
    """GridNode's default heartbeat_interval is 30 s: more than a gridq node's offline
    limit (3 heartbeat intervals of the hub), so GridNodes get three of their own."""
    from gridq import keys

    hub = make_hub()
    gn = GridNode(hub, JOIN, "x86_64").register(None, "slow-beats", 2).json()["node_id"]
    gq = hub.post(
        "/api/node/register", json={"info": GQ_INFO}, headers={"Authorization": f"Bearer {JOIN}"}
    ).json()["node_id"]
    # Both last heard from 40 s ago (the test hub's heartbeat interval is 1 s).
    hub.app.state.store.nodes.listening_since = 0.0  # type: ignore[attr-defined]
    seen = time.time() - 40
    redis_conn.zadd(keys.HUB_NODE_SEEN, {gn: seen, gq: seen})
    status = {n["id"]: n["status"] for n in user(hub, "GET", "/api/nodes").json()}
    assert status == {gn: "online", gq: "offline"}
    redis_conn.zadd(keys.HUB_NODE_SEEN, {gn: time.time() - 100})
    status = {n["id"]: n["status"] for n in user(hub, "GET", "/api/nodes").json()}
    assert status[gn] == "offline"
