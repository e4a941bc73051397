"""Fixtures for the node agent: the REAL hub (``gridq hub`` subprocess), agents as
``gridq node`` subprocesses (signals and kill -9 behave as in production), the locally
built test images, and cleanup of every container a test's agent created."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import free_port, need, wait_for
from tests.support.stack import GRIDQ, AgentProc, Hub

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ADMIN_TOKEN = "adm-" + secrets.token_hex(16)
NODE_TOKEN = "nod-" + secrets.token_hex(16)


# -- Docker ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:
        need(f"no Docker engine ({exc}); scripts/ensure-docker.sh starts one")
    yield client
    client.close()


def _build(what: str) -> None:
    r = subprocess.run(
        [str(ROOT / "scripts" / "build-test-images.sh"), what],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if r.returncode != 0:
        pytest.fail(f"scripts/build-test-images.sh {what} failed:\n{r.stdout}\n{r.stderr}")


@pytest.fixture(scope="session")
def busybox_images(docker_client: Any) -> None:
    _build("busybox")


@pytest.fixture(scope="session")
def worker_image(docker_client: Any) -> str:
    _build("worker")
    return "gridq-worker:test"


@pytest.fixture(scope="session")
def celery_image(docker_client: Any) -> str:
    """gridq-worker:test + celery[redis] + tests/celery/gridq_celery_proj.py in /app."""
    _build("celery")
    return "gridq-celery:test"


def remove_agent_containers(docker_client: Any, agent_id: str) -> None:
    for c in docker_client.containers.list(
        all=True, sparse=True, filters={"label": f"gridq.agent={agent_id}"}
    ):
        with contextlib.suppress(Exception):
            docker_client.api.remove_container(c.id, force=True)


# -- the real hub ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def openssl() -> str:
    """The openssl binary (.ci/run installs it), for certificates made in a test."""
    import shutil

    path = shutil.which("openssl")
    if not path:
        need("openssl (apt-get install openssl)")
    return str(path)


@pytest.fixture
def make_hub(make_redis: Any, tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Factory: make_hub(scheme="http", verify=True, **env) -> a started ``gridq hub``
    on its own redis-server; ``env`` adds or overrides GRIDQ_* variables."""
    started: list[tuple[Hub, subprocess.Popen[bytes], Any]] = []

    def factory(scheme: str = "http", verify: Any = True, **extra: str) -> Hub:
        srv = make_redis()
        port = free_port()
        env = dict(os.environ)
        env.update(
            GRIDQ_HUB_REDIS_URL=srv.url,
            GRIDQ_HUB_TOKEN=ADMIN_TOKEN,
            GRIDQ_NODE_TOKEN=NODE_TOKEN,
            # Heartbeats fast enough that assignments reach agents quickly, and an offline
            # verdict only after 10 s of silence: a slow `docker ps` on a loaded 2-core
            # machine (seconds, at worst) must not take a node offline and restart its workers.
            GRIDQ_HUB_HEARTBEAT_INTERVAL="0.5",
            GRIDQ_HUB_NODE_OFFLINE_AFTER="10",
            GRIDQ_HUB_SCHEDULE_INTERVAL="0.3",
            GRIDQ_HUB_LOG_LEVEL="warning",
        )
        env.update(extra)
        log_path = tmp_path / f"hub{len(started)}.log"
        log = open(log_path, "wb")  # noqa: SIM115 (outlives this scope: the hub writes to it)
        proc = subprocess.Popen(
            [GRIDQ, "hub", "--bind", f"127.0.0.1:{port}"], env=env, stdout=log, stderr=log
        )
        url = f"{scheme}://127.0.0.1:{port}"

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"hub exited: {log_path.read_text()[-2000:]}")
            try:
                return httpx.get(url + "/health", timeout=1, verify=verify).status_code < 500
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30)
        h = Hub(url, proc, srv.url, ADMIN_TOKEN, verify=verify)
        started.append((h, proc, log))
        return h

    yield factory
    for h, proc, log in started:
        h.http.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def hub(make_hub: Callable[..., Hub]) -> Hub:
    return make_hub()


# -- agents ----------------------------------------------------------------------------


@pytest.fixture
def make_agent(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., AgentProc]]:
    """Factory: make_agent(hub, runtime='docker', state_dir=None, **settings) -> started agent."""
    agents: list[AgentProc] = []

    def factory(
        hub: Hub, runtime: str = "docker", state_dir: Path | None = None, **settings: Any
    ) -> AgentProc:
        sd = state_dir or tmp_path / f"node{len(agents)}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
        env.update(
            GRIDQ_HUB_URL=hub.url,
            GRIDQ_NODE_TOKEN=NODE_TOKEN,
            GRIDQ_NODE_STATE_DIR=str(sd),
            GRIDQ_NODE_RUNTIME=runtime,
            GRIDQ_NODE_HEARTBEAT_INTERVAL="0.5",  # the hub's offline_after is 10 s
            GRIDQ_NODE_STOP_TIMEOUT="3",
            GRIDQ_NODE_RESTART_BACKOFF="0.3",
            GRIDQ_NODE_RESTART_BACKOFF_MAX="2",
            GRIDQ_NODE_METRICS_BIND="127.0.0.1:0",
            GRIDQ_NODE_PARALLELISM="8",
            GRIDQ_NODE_CONTAINER_MEMORY="64",
            PATH=f"{BIN}:{env.get('PATH', '')}",
        )
        for k, v in settings.items():
            env[f"GRIDQ_NODE_{k.upper()}"] = str(v)
        a = AgentProc(sd, env, tmp_path / f"agent{len(agents)}.log").start()
        agents.append(a)
        return a

    yield factory
    for a in agents:
        a.stop()
    # Whatever a test left behind (an agent killed with -9) is removed here.
    if any(a.env["GRIDQ_NODE_RUNTIME"] == "docker" for a in agents):
        import docker

        client = docker.from_env()
        for a in agents:
            with contextlib.suppress(Exception):
                remove_agent_containers(client, a.agent_id)
        client.close()
    for a in agents:
        procs = a.state_dir / "processes"
        if procs.is_dir():
            import json

            for rec in procs.glob("*.json"):
                with contextlib.suppress(Exception):
                    os.killpg(json.loads(rec.read_text())["pid"], signal.SIGKILL)
