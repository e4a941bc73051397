"""A GridNode in `gridq status`, against a live local stack (real hub process, HTTP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.slow]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Any]:
    from gridq.localstack import Stack

    s = Stack(state=tmp_path / "state", runtime="process")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def test_gridnode_shows_in_gridq_status(stack: Any, tmp_path: Path) -> None:
    # What GridNode sends (gridnode/src/client.rs), then one heartbeat with 3 containers.
    join = {"Authorization": f"Bearer {stack.tokens['node_token']}"}
    r = httpx.post(
        f"{stack.hub_url}/gridnode/register",
        json={"node_id": None, "hostname": "rpi-7", "architecture": "aarch64", "cpu_count": 3},
        headers=join,
    )
    assert r.status_code == 200, r.text
    node_id = r.json()["node_id"]
    hb = httpx.post(
        f"{stack.hub_url}/gridnode/heartbeat",
        json={"node_id": node_id, "status": "Idle", "active_containers": 0},
        headers=join,
    )
    assert hb.json() == {"stop_requested": False}
    env = {
        **os.environ,
        "GRIDQ_HUB_URL": stack.hub_url,
        "GRIDQ_HUB_TOKEN": stack.tokens["admin_token"],
        "HOME": str(tmp_path),
    }
    gridq = [sys.executable, "-m", "gridq.cli.main"]
    out = subprocess.run(
        [*gridq, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    nodes = {n["node_id"]: n for n in json.loads(out.stdout)["nodes"]}
    assert nodes[node_id]["runtime"] == "gridnode" and nodes[node_id]["status"] == "online"
    assert nodes[node_id]["arch"] == "linux/arm64" and nodes[node_id]["architecture"] == "aarch64"
    table = subprocess.run(
        [*gridq, "status"],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0 and "gridnode" in table.stdout and "rpi-7" in table.stdout
