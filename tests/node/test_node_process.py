"""The process runtime end to end: the real hub and a `gridq node --runtime process` agent."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import need, wait_for
from tests.support.stack import Hub

pytestmark = pytest.mark.slow

SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
ARM64_BUSYBOX = (
    Path(os.environ.get("GRIDQ_IMAGE_CACHE", "/var/cache/gridq-test-images")) / "busybox-arm64"
)


def records(agent: Any, task: str) -> list[dict[str, Any]]:
    out = []
    for p in (agent.state_dir / "processes").glob("*.json"):
        try:
            rec = json.loads(p.read_text())
        except (ValueError, FileNotFoundError):
            continue
        if rec["task"] == task:
            out.append(rec)
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def running(hub: Hub, node_id: str, task: str) -> list[dict[str, Any]]:
    return [i for i in hub.instances(node_id) if i["task"] == task and i["state"] == "running"]


def test_start_scale_rollover_delete(hub: Hub, make_agent: Any) -> None:
    agent = make_agent(hub, runtime="process")
    node_id = agent.node_id()
    hub.create_task(name="psleep", command=SLEEPER, replicas=2)
    wait_for(lambda: len(running(hub, node_id, "psleep")) == 2)
    recs = records(agent, "psleep")
    assert sorted(r["instance_id"] for r in recs) == [f"psleep-{node_id}-0", f"psleep-{node_id}-1"]
    env = Path(f"/proc/{recs[0]['pid']}/environ").read_bytes().split(b"\0")
    env_d = dict(e.decode().split("=", 1) for e in env if b"=" in e)
    assert env_d["NODE_ID"] == node_id and env_d["TASK_NAME"] == "psleep"
    assert env_d["INSTANCE_ID"] == recs[0]["instance_id"]
    assert "GRIDQ_NODE_TOKEN" not in env_d  # the agent's secret never reaches a worker
    assert int(env_d["GRIDQ_METRICS_PORT"]) > 0
    assert all(i["metrics_url"].startswith("http://") for i in running(hub, node_id, "psleep"))

    hub.patch_task("psleep", replicas=3)
    wait_for(lambda: len(running(hub, node_id, "psleep")) == 3)
    hub.patch_task("psleep", replicas=1)
    wait_for(lambda: len(records(agent, "psleep")) == 1)
    old = records(agent, "psleep")[0]
    hub.patch_task("psleep", env={"COLOUR": "red"})
    wait_for(
        lambda: (
            (r := records(agent, "psleep"))
            and len(r) == 1
            and r[0]["spec_hash"] != old["spec_hash"]
        )
    )
    wait_for(lambda: not alive(old["pid"]))
    hub.delete_task("psleep")
    wait_for(lambda: not records(agent, "psleep"))


def test_crash_restart_crashloop_and_redis_auth(hub: Hub, make_agent: Any) -> None:
    agent = make_agent(hub, runtime="process")
    node_id = agent.node_id()
    hub.create_task(
        name="pcrash",
        replicas=1,
        command=["sh", "-c", "echo 'cannot reach redis://:s3cret@db:6379'; exit 5"],
    )
    hub.create_task(name="pauth", replicas=1, command=["sh", "-c", "exit 77"])

    def states() -> dict[str, dict[str, Any]] | None:
        got = {i["task"]: i for i in hub.instances(node_id)}
        ok = got.get("pcrash", {}).get("state") == "crashloop" and got.get("pauth", {}).get("error")
        return got if ok else None

    got = wait_for(states, timeout=30)
    assert got["pcrash"]["error"] == "exited 5: cannot reach redis://:***@db:6379"
    assert got["pcrash"]["restarts"] >= 2
    assert got["pauth"]["error"] == (
        "Redis rejected the credentials (check the password in the task's Redis URL)"
    )
    assert "s3cret" not in agent.log()


@pytest.mark.docker
def test_exec_format_error(hub: Hub, make_agent: Any, busybox_images: None) -> None:
    # busybox_images runs scripts/build-test-images.sh busybox, which downloads the arm64
    # binary into the image cache when it builds the arm64 images.
    if not ARM64_BUSYBOX.exists():
        need(f"{ARM64_BUSYBOX} (scripts/build-test-images.sh busybox leaves it there)")
    agent = make_agent(hub, runtime="process")
    node_id = agent.node_id()
    hub.create_task(name="parm", replicas=1, command=[str(ARM64_BUSYBOX), "echo", "hi"])
    err = wait_for(
        lambda: next((i.get("error") for i in hub.instances(node_id) if i.get("error")), None)
    )
    assert (
        err.startswith("exec format error:") and "linux/arm64, this node is linux/amd64" in err
    ), err


def test_adoption_after_agent_crash(hub: Hub, make_agent: Any) -> None:
    agent = make_agent(hub, runtime="process")
    node_id = agent.node_id()
    hub.create_task(name="padopt", command=SLEEPER, replicas=2)
    wait_for(lambda: len(running(hub, node_id, "padopt")) == 2)
    pids = sorted(r["pid"] for r in records(agent, "padopt"))
    agent.signal(signal.SIGKILL)
    agent.wait()
    assert all(alive(p) for p in pids)  # own process groups: they survive the agent
    again = make_agent(hub, runtime="process", state_dir=agent.state_dir)
    assert again.node_id() == node_id
    wait_for(lambda: len(running(hub, node_id, "padopt")) == 2)
    time.sleep(1.0)
    assert sorted(r["pid"] for r in records(again, "padopt")) == pids
    # And a drain stops adopted processes too.
    again.signal(signal.SIGTERM)
    assert again.wait(20) == 0
    assert not any(alive(p) for p in pids)
