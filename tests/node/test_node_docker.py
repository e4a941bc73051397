"""The docker runtime end to end: the real hub, a `gridq node` agent, a real Docker engine.

Images are built locally by scripts/build-test-images.sh (no registry here)."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.support import wait_for
from tests.support.stack import Hub

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BUSYBOX = "gridq-test-busybox:amd64"
# PID 1 ignores SIGTERM without a handler: trap it so a stop is graceful and quick.
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]


class C:
    """A container as listed (one API call, no per-container inspect: no race with removal)."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.id: str = raw["Id"]
        self.name: str = raw["Names"][0].lstrip("/")
        self.labels: dict[str, str] = raw.get("Labels") or {}
        self.status: str = raw["State"]


def containers(dc: Any, agent_id: str, task: str | None = None) -> list[C]:
    label = [f"gridq.agent={agent_id}"] + ([f"gridq.task={task}"] if task else [])
    return [C(r) for r in dc.api.containers(all=True, filters={"label": label})]


def running(dc: Any, agent_id: str, task: str) -> list[C]:
    return [c for c in containers(dc, agent_id, task) if c.status == "running"]


def env_of(dc: Any, c: C) -> dict[str, str]:
    attrs = dc.api.inspect_container(c.id)
    return dict(e.split("=", 1) for e in attrs["Config"]["Env"])


def status_of(hub: Hub, node_id: str, task: str) -> list[dict[str, Any]]:
    return [i for i in hub.instances(node_id) if i["task"] == task]


def test_start_scale_rollover(
    hub: Hub, make_agent: Any, docker_client: Any, busybox_images: None
) -> None:
    agent = make_agent(hub)
    node_id = agent.node_id()
    hub.create_task(
        name="sleepy",
        image=BUSYBOX,
        command=SLEEPER,
        replicas=2,
        resources={"cpus": 0.5, "memory_mb": 32},
    )
    cs = wait_for(
        lambda: (
            len(running(docker_client, agent.agent_id, "sleepy")) == 2
            and running(docker_client, agent.agent_id, "sleepy")
        )
    )
    names = sorted(c.name for c in cs)
    assert names == [f"gridq-sleepy-{node_id}-0", f"gridq-sleepy-{node_id}-1"]
    c = cs[0]
    hc = docker_client.api.inspect_container(c.id)["HostConfig"]
    assert hc["Memory"] == 32 * 2**20 and hc["MemorySwap"] == 32 * 2**20
    assert hc["NanoCpus"] == 500_000_000
    assert hc["CapDrop"] == ["ALL"] and hc["Privileged"] is False
    assert hc["SecurityOpt"] == ["no-new-privileges"]
    assert hc["PidsLimit"] == 1024
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
    assert not any("docker.sock" in b for b in hc.get("Binds") or [])
    env = env_of(docker_client, c)
    assert env["NODE_ID"] == node_id and env["TASK_NAME"] == "sleepy"
    assert env["INSTANCE_ID"] == c.labels["gridq.instance"]
    assert env["GRIDQ_METRICS_PORT"] == "9100"
    assert env["INPUT_REDIS_URL"] == hub.redis_url and env["INPUT_QUEUE"] == "q-sleepy"
    assert {"gridq.task", "gridq.node", "gridq.instance", "gridq.spec"} <= set(c.labels)
    # IDM-GridCore's `docker ps --filter label=task=NAME` finds them.
    by_task = docker_client.api.containers(filters={"label": "task=sleepy"})
    assert sorted(x["Id"] for x in by_task) == sorted(x.id for x in cs)

    # The hub sees them running, with a metrics URL its Prometheus can scrape.
    st = wait_for(
        lambda: (
            [i for i in status_of(hub, node_id, "sleepy") if i["state"] == "running"]
            if len(status_of(hub, node_id, "sleepy")) == 2
            else None
        )
    )
    assert all(i.get("metrics_url", "").endswith(":9100/metrics") for i in st)

    hub.patch_task("sleepy", replicas=3)
    wait_for(lambda: len(running(docker_client, agent.agent_id, "sleepy")) == 3)
    hub.patch_task("sleepy", replicas=1)
    wait_for(lambda: len(containers(docker_client, agent.agent_id, "sleepy")) == 1)
    assert containers(docker_client, agent.agent_id, "sleepy")[0].name.endswith("-0")

    old_hash = containers(docker_client, agent.agent_id, "sleepy")[0].labels["gridq.spec"]
    hub.patch_task("sleepy", env={"COLOUR": "blue"}, replicas=2)

    def rolled() -> bool:
        cs = containers(docker_client, agent.agent_id, "sleepy")
        return len(cs) == 2 and all(
            c.labels["gridq.spec"] != old_hash and c.status == "running" for c in cs
        )

    wait_for(rolled)
    env = env_of(docker_client, containers(docker_client, agent.agent_id, "sleepy")[0])
    assert env["COLOUR"] == "blue"

    hub.delete_task("sleepy")
    wait_for(lambda: not containers(docker_client, agent.agent_id, "sleepy"))


def test_crash_restart_backoff_and_crashloop(
    hub: Hub, make_agent: Any, docker_client: Any, busybox_images: None
) -> None:
    agent = make_agent(hub)
    node_id = agent.node_id()
    hub.create_task(
        name="crashy",
        image=BUSYBOX,
        replicas=1,
        command=[
            "sh",
            "-c",
            "echo starting; sleep 0.05; echo 'fatal: redis://u:hunter2@db:6379 is down' >&2; exit 5",
        ],
    )
    seen: dict[str, Any] = {}

    def crashloop() -> bool:
        # Exited containers must not pile up, whatever the moment.
        assert len(containers(docker_client, agent.agent_id, "crashy")) <= 1
        for i in status_of(hub, node_id, "crashy"):
            seen[i["state"]] = i
        return "crashloop" in seen

    wait_for(crashloop, timeout=30)
    inst = seen["crashloop"]
    assert inst["restarts"] >= 2
    assert inst["error"] == "exited 5: fatal: redis://u:***@db:6379 is down"
    assert "hunter2" not in agent.log()
    node = hub.node(node_id)
    assert node is not None
    assert any("exited 5" in e for e in node["errors"])
    # Backoff: restarts are spaced (0.3, 0.6, 1.2, 2 s...), not a hot loop.
    r0 = inst["restarts"]
    time.sleep(1.5)
    later = max(i["restarts"] for i in status_of(hub, node_id, "crashy"))
    assert later - r0 <= 3


def test_adoption_after_agent_restart(
    hub: Hub, make_agent: Any, docker_client: Any, busybox_images: None
) -> None:
    agent = make_agent(hub)
    node_id = agent.node_id()
    hub.create_task(name="keep", image=BUSYBOX, command=SLEEPER, replicas=2)
    wait_for(lambda: len(running(docker_client, agent.agent_id, "keep")) == 2)
    before = sorted(c.id for c in containers(docker_client, agent.agent_id, "keep"))
    # No resources.cpus: each worker gets the node's CPUs / its parallelism (8 here).
    ncpu = docker_client.info()["NCPU"]
    hc = docker_client.api.inspect_container(before[0])["HostConfig"]
    assert hc["NanoCpus"] == int(ncpu / 8 * 1e9)
    agent.signal(signal.SIGKILL)  # a crash: no drain
    agent.wait()
    again = make_agent(hub, state_dir=agent.state_dir)
    assert again.node_id() == node_id
    # It adopts: same containers, no duplicates, the hub sees them running.
    wait_for(
        lambda: (
            [i for i in status_of(hub, node_id, "keep") if i["state"] == "running"]
            and len(status_of(hub, node_id, "keep")) == 2
        )
    )
    time.sleep(1.0)
    after = sorted(c.id for c in containers(docker_client, agent.agent_id, "keep"))
    assert after == before


def test_exec_format_error(
    hub: Hub, make_agent: Any, docker_client: Any, busybox_images: None
) -> None:
    agent = make_agent(hub)
    node_id = agent.node_id()
    # An honest arm64 image: it does not count as present, the pull fails (no registry).
    hub.create_task(name="armhonest", image="gridq-test-busybox:arm64", replicas=1)
    # A mislabelled one (config says amd64): it runs and fails with exec format error.
    hub.create_task(name="armlabel", image="gridq-test-busybox:arm64-mislabelled", replicas=1)
    expected = "exec format error: the image is for linux/arm64"

    def errors() -> dict[str, str] | None:
        found = {i["task"]: i.get("error") or "" for i in hub.instances(node_id)}
        ok = all(expected in found.get(t, "") for t in ("armhonest", "armlabel"))
        return found if ok else None

    found = wait_for(errors, timeout=30)
    assert found["armlabel"].startswith(
        "exec format error: the image is for linux/arm64, this node is linux/amd64"
    ), found
    assert "this node is linux/amd64" in found["armhonest"], found


def test_oom_diagnosis(hub: Hub, make_agent: Any, docker_client: Any, busybox_images: None) -> None:
    agent = make_agent(hub)
    node_id = agent.node_id()
    hub.create_task(
        name="hungry",
        image=BUSYBOX,
        replicas=1,
        resources={"memory_mb": 16},
        command=["sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo done"],
    )
    err = wait_for(
        lambda: next(
            (i.get("error") for i in status_of(hub, node_id, "hungry") if i.get("error")), None
        ),
        timeout=30,
    )
    assert err.startswith("OOM-killed (exit 137) at the 16 MB limit"), err


def test_image_not_found_and_redis_auth(
    hub: Hub, make_agent: Any, docker_client: Any, busybox_images: None
) -> None:
    agent = make_agent(hub)
    node_id = agent.node_id()
    hub.create_task(name="ghost", image="gridq-test-nonexistent:1", replicas=1)
    hub.create_task(
        name="badpass",
        image=BUSYBOX,
        replicas=1,
        command=["sh", "-c", "echo 'WRONGPASS invalid username-password pair'; exit 77"],
    )

    def errors() -> dict[str, str] | None:
        found = {i["task"]: i.get("error") or "" for i in hub.instances(node_id)}
        return found if found.get("ghost") and found.get("badpass") else None

    found = wait_for(errors, timeout=30)
    assert found["ghost"].startswith("image not found: gridq-test-nonexistent:1"), found
    assert (
        found["badpass"]
        == "Redis rejected the credentials (check the password in the task's Redis URL)"
    )


def test_sigterm_drains_busy_workers_then_second_signal_kills(
    hub: Hub, make_agent: Any, docker_client: Any, busybox_images: None
) -> None:
    # A worker that takes 1.5 s to finish after SIGTERM (a job in flight).
    slow = ["sh", "-c", "trap 'sleep 1.5; exit 0' TERM; while true; do sleep 0.1; done"]
    agent = make_agent(hub, stop_timeout=10)
    node_id = agent.node_id()
    hub.create_task(name="busy", image=BUSYBOX, command=slow, replicas=2)
    wait_for(lambda: len(running(docker_client, agent.agent_id, "busy")) == 2)
    since = int(time.time()) - 1
    agent.signal(signal.SIGTERM)
    assert agent.wait(60) == 0
    # Each worker finished its trap and exited 0: the agent waited for the graceful exit
    # instead of killing at the stop timeout (which would show as 137).
    assert exit_codes(docker_client, agent.agent_id, "busy", since) == ["0", "0"]
    assert containers(docker_client, agent.agent_id) == []
    wait_for(lambda: (hub.node(node_id) or {}).get("status") == "left")

    # Second signal: workers that ignore SIGTERM are killed at once.
    stubborn = ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]
    hub.create_task(name="stubborn", image=BUSYBOX, command=stubborn, replicas=1)
    agent2 = make_agent(hub, stop_timeout=60)
    agent2.node_id()
    wait_for(lambda: running(docker_client, agent2.agent_id, "stubborn"))
    since = int(time.time()) - 1
    agent2.signal(signal.SIGTERM)
    time.sleep(1.0)
    assert agent2.proc.poll() is None  # still draining (60 s timeout)
    agent2.signal(signal.SIGTERM)
    agent2.wait(40)  # well before the 60 s stop timeout
    # Killed at the second signal (SIGKILL: 137), not stopped by a timeout.
    assert exit_codes(docker_client, agent2.agent_id, "stubborn", since) == ["137"]
    assert containers(docker_client, agent2.agent_id) == []


def exit_codes(docker_client: Any, agent_id: str, task: str, since: int) -> list[str]:
    """Exit codes of the task's containers of this agent that died since `since`."""
    events = docker_client.events(
        since=since,
        until=int(time.time()) + 1,
        filters={
            "type": "container",
            "event": "die",
            "label": [f"gridq.agent={agent_id}", f"gridq.task={task}"],
        },
        decode=True,
    )
    return sorted(e["Actor"]["Attributes"]["exitCode"] for e in events)


def test_hub_stop_request(
    hub: Hub, make_agent: Any, docker_client: Any, busybox_images: None
) -> None:
    agent = make_agent(hub)
    node_id = agent.node_id()
    hub.create_task(name="tostop", image=BUSYBOX, command=SLEEPER, replicas=1)
    wait_for(lambda: running(docker_client, agent.agent_id, "tostop"))
    hub.stop_node(node_id)
    assert agent.wait(30) == 0
    assert containers(docker_client, agent.agent_id) == []
