"""Fast unit tests of the node agent: settings, identity file, diagnosis, HTTP client errors.

The client's error handling uses httpx.MockTransport (a stub for 401/410/5xx only); every
end-to-end test runs the real hub."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridq.errors import ConfigError
from gridq.node.client import HubClient, HubRejected, HubUnavailable
from gridq.node.config import NodeSettings
from gridq.node.diagnose import diagnose, elf_platform
from gridq.node.identity import IdentityStore
from gridq.nodeproto import Heartbeat, NodeInfo
from gridq.settings import load


def test_settings_precedence_env_and_gridnode_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "gridnode.toml"
    cfg.write_text(
        'server_url = "http://hub:8080"\ntoken = "t0ken-from-file"\nparallelism = 3\n'
        "heartbeat_interval = 2.5\nstop_timeout = 12\ncontainer_memory = 512\n"
    )
    s = load(NodeSettings, cfg)
    assert (s.hub_url, s.token(), s.parallelism, s.heartbeat_interval) == (
        "http://hub:8080",
        "t0ken-from-file",
        3,
        2.5,
    )
    assert (s.stop_timeout, s.container_memory) == (12, 512)
    monkeypatch.setenv("GRIDQ_HUB_URL", "http://env:1")
    monkeypatch.setenv("GRIDQ_NODE_LABELS", "gpu=yes, zone=a")
    s = load(NodeSettings, cfg, parallelism=7)
    assert s.hub_url == "http://env:1" and s.parallelism == 7
    assert s.labels == {"gpu": "yes", "zone": "a"}
    assert "t0ken-from-file" not in repr(s)
    cfg.write_text("[node]\nnot_a_setting = 1\n")
    with pytest.raises(ConfigError, match="not_a_setting"):
        load(NodeSettings, cfg)


def test_identity_file_is_private(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path / "state")
    ident = store.load()
    ident.node_id, ident.secret = "n1", "s3cret"
    store.save(ident)
    assert stat.S_IMODE((tmp_path / "state" / "identity.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    again = IdentityStore(tmp_path / "state").load()
    assert (again.agent_id, again.node_id, again.secret) == (ident.agent_id, "n1", "s3cret")
    assert "s3cret" not in repr(again)


def test_diagnosis_words() -> None:
    assert diagnose(exit_code=137, oom_killed=True, memory_mb=1024).startswith(
        "OOM-killed (exit 137) at the 1024 MB limit"
    )
    assert diagnose(exit_code=77) == (
        "Redis rejected the credentials (check the password in the task's Redis URL)"
    )
    assert (
        diagnose(
            exit_code=1,
            logs="exec /bin/x: exec format error",
            image_platform="linux/arm64",
            node_platform="linux/amd64",
        )
        == "exec format error: the image is for linux/arm64, this node is linux/amd64"
    )
    assert (
        diagnose(exit_code=2, logs="a\nboom redis://:pw@h:1/0\n\n")
        == "exited 2: boom redis://:***@h:1/0"
    )
    assert diagnose(exit_code=-9).startswith("killed by SIGKILL")
    arm = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x02\x00\xb7\x00"
    assert elf_platform(arm) == "linux/arm64"


def _info() -> NodeInfo:
    return NodeInfo(
        hostname="h",
        arch="linux/amd64",
        cpus=1,
        memory_mb=1,
        runtime="process",
        parallelism=1,
        version="0",
    )


def _client(tmp_path: Path, handler: object) -> HubClient:
    return HubClient(
        "http://hub",
        "join-token",
        IdentityStore(tmp_path),
        _info,
        transport=httpx.MockTransport(handler),
    )  # type: ignore[arg-type]


def _hb_body(node_id: str) -> dict[str, object]:
    return {
        "node_id": node_id,
        "spec_version": 1,
        "assignments": [],
        "stop": False,
        "heartbeat_interval": 1.0,
        "server_time": 0.0,
    }


def test_client_reregisters_on_401_and_410(tmp_path: Path) -> None:
    calls: list[str] = []
    state = {"n": 0}

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(f"{req.url.path} {req.headers['authorization']}")
        if req.url.path == "/api/node/register":
            state["n"] += 1
            return httpx.Response(
                200,
                json={
                    "node_id": f"n{state['n']}",
                    "secret": f"s{state['n']}",
                    "heartbeat_interval": 1.0,
                },
            )
        node = req.url.path.split("/")[3]
        if node == "n1":
            return httpx.Response(401 if state["n"] == 1 else 410)
        return httpx.Response(200, json=_hb_body(node))

    c = _client(tmp_path, handler)
    resp = c.heartbeat(Heartbeat(info=_info()))
    assert resp.node_id == "n2" and c.node_id == "n2"
    assert calls[0] == "/api/node/register Bearer join-token"
    assert "/api/node/n1/heartbeat Bearer s1" in calls
    saved = json.loads((tmp_path / "identity.json").read_text())
    assert saved["node_id"] == "n2"


def test_client_starts_from_the_register_answer(tmp_path: Path) -> None:
    calls: list[str] = []
    assignment = {
        "task": "t",
        "replicas": 2,
        "spec": {"command": ["sleep", "1"], "spec_hash": "abc"},
    }

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(f"{req.url.path}?{req.url.query.decode()}")
        if req.url.path == "/api/node/register":
            assert req.url.params.get("assignments") == "true"
            body = {"node_id": "n1", "secret": "s1", "heartbeat_interval": 1.0}
            body |= {"assignments": [assignment], "spec_version": 3, "later_field": 1}
            return httpx.Response(200, json=body)
        return httpx.Response(200, json=_hb_body("n1"))

    c = _client(tmp_path, handler)
    resp = c.heartbeat(Heartbeat(info=_info()))
    # Answered by the registration alone: no heartbeat sent yet, the agent reports next.
    assert calls == ["/api/node/register?assignments=true"] and c.answered_by_register
    assert [(a.task, a.replicas) for a in resp.assignments] == [("t", 2)]
    assert resp.spec_version == 3 and resp.node_id == "n1" and not resp.stop
    c.heartbeat(Heartbeat(info=_info()))
    assert calls[-1] == "/api/node/n1/heartbeat?" and not c.answered_by_register
    # A draining node's first contact still reports itself with a heartbeat.
    c = _client(tmp_path / "d", handler)
    c.heartbeat(Heartbeat(info=_info(), draining=True))
    assert calls[-1] == "/api/node/n1/heartbeat?" and not c.answered_by_register


def test_client_errors_are_typed(tmp_path: Path) -> None:
    c = _client(tmp_path, lambda req: httpx.Response(503, text="down"))
    with pytest.raises(HubUnavailable):
        c.heartbeat(Heartbeat(info=_info()))
    c = _client(tmp_path, lambda req: httpx.Response(401, text="no"))
    with pytest.raises(HubRejected, match="GRIDQ_NODE_TOKEN"):
        c.register()

    def refuse(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    c = _client(tmp_path, refuse)
    with pytest.raises(HubUnavailable, match="unreachable"):
        c.register()


def test_cli_help_lists_every_setting() -> None:
    from click.testing import CliRunner

    from gridq.cli.main import cli

    out = CliRunner().invoke(cli, ["node", "--help"]).output
    for field in NodeSettings.model_fields:
        if field in ("node_token",):
            assert "--token" in out
            continue
        assert "--" + field.replace("_", "-") in out, field
    assert "GRIDQ_NODE_STOP_TIMEOUT" in out and "GRIDQ_HUB_URL" in out


def test_agent_metrics_and_health_endpoints() -> None:
    from gridq.metrics_http import MetricsServer
    from gridq.node.metrics import NodeMetrics

    m = NodeMetrics()
    m.set_states({"running": 2, "crashloop": 1})
    m.runtime_errors.labels("pull").inc()
    srv = MetricsServer(
        m.registry, lambda: (True, {"status": "ok", "instances": 3}), "127.0.0.1", 0
    )
    srv.start()
    try:
        text = httpx.get(f"http://127.0.0.1:{srv.port}/metrics").text
        assert 'gridq_node_instances{state="running"} 2.0' in text
        assert 'gridq_node_runtime_errors_total{op="pull"} 1.0' in text
        assert "gridq_node_reconcile_seconds_bucket" in text
        assert httpx.get(f"http://127.0.0.1:{srv.port}/health").json()["instances"] == 3
        assert httpx.get(f"http://127.0.0.1:{srv.port}/nope").status_code == 404
    finally:
        srv.close()
    failing = MetricsServer(
        m.registry, lambda: (False, {"status": "hub unreachable"}), "127.0.0.1", 0
    )
    failing.start()
    try:
        assert httpx.get(f"http://127.0.0.1:{failing.port}/health").status_code == 503
    finally:
        failing.close()


def offline_settings(tmp_path: Path, **kw: Any) -> NodeSettings:
    """A process-runtime node whose hub is unreachable (port 9): no hub, no metrics."""
    return NodeSettings(
        hub_url="http://127.0.0.1:9",
        node_token="zqNtok3nForUnitTests0001",
        state_dir=tmp_path,
        runtime="process",
        metrics_bind="",
        **kw,
    )


def test_agent_retries_a_failing_hub_inside_the_offline_window(tmp_path: Path) -> None:
    """The hub declares a node offline after 3 silent intervals, counted from when it can
    hear again (hub/outage.py): a failed heartbeat is retried within 2, however long the
    outage, so the first heartbeat after it always lands in time."""
    from gridq.node.agent import Agent

    s = offline_settings(tmp_path, heartbeat_interval=5.0)
    agent = Agent(s)
    try:
        assert agent.interval() == 5.0
        for failures in (1, 2, 5, 50):
            agent._hub_failures = failures
            assert 5.0 <= agent.interval() <= 10.0, failures
    finally:
        agent.close()


def test_a_stale_snapshot_never_starts_an_instance_twice(tmp_path: Path) -> None:
    """list() runs outside the reconciler's lock. Here it is made to return a snapshot
    taken before a start finished (the race a busy node hits): the pass must re-list,
    not start the instance again. Real processes (the process runtime, `sleep`)."""
    import threading

    from gridq.node.metrics import NodeMetrics
    from gridq.node.reconcile import Reconciler
    from gridq.node.runtime.process_rt import ProcessRuntime
    from gridq.nodeproto import Assignment, WorkerSpec

    s = offline_settings(tmp_path)
    rt = ProcessRuntime(s, "agent-test")
    gate = threading.Event()
    starts: list[str] = []
    real_start, real_list = rt.start, rt.list

    def slow_start(inst: Any) -> Any:
        gate.wait(10)  # held until the second pass has taken its snapshot
        starts.append(inst.instance_id)
        return real_start(inst)

    rec = Reconciler(rt, s, NodeMetrics())
    stale_once = [True]

    def stale_list() -> Any:
        snap = real_list()
        if stale_once[0] and rec.pending:
            stale_once[0] = False
            gate.set()  # let the start finish now, after the snapshot...
            deadline = time.monotonic() + 10
            while rec.pending and time.monotonic() < deadline:
                time.sleep(0.01)  # ...and return the snapshot only once it has
        return snap

    rt.start = slow_start  # type: ignore[method-assign]
    rt.list = stale_list  # type: ignore[method-assign]
    spec = WorkerSpec(command=["sleep", "60"], spec_hash="h1")
    desired = [Assignment(task="t", replicas=1, spec=spec)]
    try:
        rec.reconcile(desired, "n1")  # issues the start (held at the gate)
        rec.reconcile(desired, "n1")  # snapshot goes stale while it lists
        rec.reconcile(desired, "n1")
        deadline = time.monotonic() + 10
        while rec.busy() and time.monotonic() < deadline:
            time.sleep(0.01)  # a second start, if one was issued, has now run
        running = [o for o in real_list() if o.state == "running"]
        assert starts == ["t-n1-0"] and len(running) == 1
        # The runtime itself refuses a second process for a live instance id.
        again = real_start(rec_instance(running[0], spec))
        assert again.handle == running[0].handle and len(real_list()) == 1
    finally:
        rec.stop_all(5)
        deadline = time.monotonic() + 15
        while rec.busy() and time.monotonic() < deadline:
            time.sleep(0.05)
        rec.close()
        assert not [o for o in real_list() if o.state == "running"]


def rec_instance(o: Any, spec: Any) -> Any:
    from gridq.node.runtime.base import Instance

    return Instance(
        task=o.task, index=o.index, instance_id=o.instance_id, node_id=o.node_id,
        spec=spec, env={}, memory_mb=256,
    )  # fmt: skip


def test_drain_stops_a_worker_whose_start_was_in_flight(tmp_path: Path) -> None:
    """SIGTERM while a start is still running: the drain must wait for it and then stop
    that worker too, not leave it running after the agent has gone."""
    import threading

    from gridq.node.agent import Agent
    from gridq.nodeproto import Assignment, WorkerSpec

    s = offline_settings(tmp_path, stop_timeout=5)
    agent = Agent(s)
    rt = agent.reconciler.runtime
    real_start = rt.start
    gate = threading.Event()

    def slow_start(inst: Any) -> Any:
        gate.wait(10)
        return real_start(inst)

    rt.start = slow_start  # type: ignore[method-assign]
    spec = WorkerSpec(command=["sleep", "60"], spec_hash="h1")
    try:
        agent.reconciler.reconcile([Assignment(task="t", replicas=1, spec=spec)], "n1")
        assert agent.reconciler.busy()  # the start is in flight
        threading.Timer(0.3, gate.set).start()  # it finishes once the drain has begun
        agent._drain()
        assert not [o for o in rt.list() if o.state == "running"], rt.list()
    finally:
        gate.set()
        for o in rt.list():
            rt.kill(o)
        agent.close()
