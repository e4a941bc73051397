"""Node checks against the real Docker engine: an arm64-only image on this amd64 engine,
and a bridge-network task whose Redis URL says 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from doctor_helpers import by_name

from gridq.doctor import node_checks
from gridq.doctor.node_checks import NodeConfig
from gridq.doctor.task_checks import TaskInfo
from tests.support import need

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
PROBE = "gridq-test-busybox:amd64"


@pytest.fixture(scope="module")
def dock() -> Iterator[Any]:
    check, client = node_checks.docker_engine()
    if client is None:
        need(f"no Docker engine ({check.saw}); scripts/ensure-docker.sh starts one")
    assert check.status == "ok"
    if node_checks.engine_platform(client)[1] != "amd64":
        need("these cases are written for an amd64 engine")
    r = subprocess.run(
        [str(ROOT / "scripts" / "build-test-images.sh"), "busybox"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if r.returncode != 0:
        pytest.fail(f"build-test-images.sh busybox failed: {r.stderr[-2000:]}")
    yield client
    for c in client.containers.list(all=True, filters={"label": node_checks.PROBE_LABEL}):
        c.remove(force=True)
    client.close()


@pytest.fixture
def bridge(dock: Any) -> Iterator[str]:
    name = f"gridq-doctor-{uuid.uuid4().hex[:8]}"
    net = dock.networks.create(name, driver="bridge")
    yield name
    net.remove()


def test_arm64_image_on_amd64_engine(dock: Any) -> None:
    t = TaskInfo(
        name="armtask",
        input_redis="redis://r:6379/0",
        input_queue="q",
        image="gridq-test-busybox:arm64",
    )
    c = node_checks.check_arch(dock, [t])[0]
    assert c.status == "fail"
    assert "linux/arm64" in c.saw and "linux/amd64" in c.saw and "exec format error" in c.saw
    assert "Build the image for linux/amd64" in c.fix
    good = TaskInfo(name="ok", input_redis="redis://r/0", input_queue="q", image=PROBE)
    assert node_checks.check_arch(dock, [good])[0].status == "ok"
    per_platform = TaskInfo(
        name="pp",
        input_redis="redis://r/0",
        input_queue="q",
        images={"linux/arm64": "gridq-test-busybox:arm64"},
    )
    c = node_checks.check_arch(dock, [per_platform])[0]
    assert c.status == "fail" and "none for linux/amd64" in c.saw


def test_loopback_redis_from_a_bridge_network(dock: Any, bridge: str, redis_url: str) -> None:
    t = TaskInfo(name="loop", input_redis=redis_url, input_queue="q", image=PROBE)
    cfg = NodeConfig(parallelism=1, container_memory_mb=64, network=bridge, probe_image=PROBE)
    c = by_name(node_checks.check_network(dock, cfg, [t]), "node.network")
    assert c.status == "fail" and "127.0.0.1" in c.saw and "the container itself" in c.saw
    assert "GRIDQ_NODE_DOCKER_NETWORK=host" in c.fix
    # The same task with the workers on the host network reaches it.
    cfg.network = "host"
    c = by_name(node_checks.check_network(dock, cfg, [t]), "node.network")
    assert c.status == "ok", c
    assert not dock.containers.list(all=True, filters={"label": node_checks.PROBE_LABEL})


def test_unresolvable_host_and_missing_network(dock: Any, bridge: str) -> None:
    t = TaskInfo(
        name="dns", input_redis="redis://redis-nowhere:6379/0", input_queue="q", image=PROBE
    )
    cfg = NodeConfig(parallelism=1, container_memory_mb=64, network=bridge, probe_image=PROBE)
    c = by_name(node_checks.check_network(dock, cfg, [t]), "node.network")
    assert c.status == "fail" and "does not resolve" in c.saw
    cfg.network = "no-such-net-" + uuid.uuid4().hex[:6]
    c = node_checks.check_network(dock, cfg, [t])[0]
    assert c.status == "fail" and "does not exist" in c.saw


def test_disk_and_memory(dock: Any) -> None:
    # The verdict follows the free space under Docker's root, measured here on our own.
    root = dock.info()["DockerRootDir"]
    free_gb = shutil.disk_usage(root).free / 1024**3
    want = "fail" if free_gb < 1.0 else "warn" if free_gb < 5.0 else "ok"
    disk = node_checks.check_disk(dock)
    assert disk.status == want and root in disk.saw, (disk, free_gb)
    over = NodeConfig(parallelism=64, container_memory_mb=4096, network="bridge")
    c = node_checks.check_memory(over, total_bytes=16 * 1024**3)
    assert c.status == "fail" and "OOM" in c.saw and "GRIDQ_NODE_PARALLELISM" in c.fix
    fine = NodeConfig(parallelism=4, container_memory_mb=1024, network="bridge")
    assert node_checks.check_memory(fine, total_bytes=16 * 1024**3).status == "ok"
