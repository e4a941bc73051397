"""Docs are tests: every `gridq ...` and `curl ...` command and every JSON request body
of README.md and docs/*.md runs against a live local stack (gridq.localstack: Redis,
hub, a process-runtime node), and must be accepted, unless the doc marks it
``<!-- not-run: REASON -->`` (doc_examples.py says how examples are collected).

"Accepted": a command exits 0 (curl fails on an HTTP error status: ``--fail-with-body``,
pipelines with ``pipefail``); a command that starts a service (``gridq hub|node|worker|
up|celery``) is still running after a few seconds, then is stopped; a JSON task body is
registered (201), a node registration body answered (200).

Placeholders become the stack's values: Redis URLs (``redis://:PASSWORD@redis:6379/0``
and the like) the stack's Redis, hub URLs (``http://127.0.0.1:8080``, ``http://hub:8080``)
the stack's hub, ``<admin token>``, ``$GRIDQ_HUB_TOKEN``, ``$HUB``, ``$AUTH`` its
credentials, a node id in ``/api/nodes/ID`` a node registered for the purpose. State an
example assumes is provided: a task it names exists (registered with the doc's last
body for that name), a task it registers does not exist yet, the task ``reports`` the
docs' schedules push to is registered (with ``gridq task register``, as a user would
before adding a schedule), and a task whose dead letters an example browses or changes
has some (raw items its worker failed: the demo app's ``square`` handler on ``x``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from doc_examples import Example, collect

from tests.support import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = collect(ROOT)
# Marked examples are not tests: the doc says why they cannot run here (the collector
# refuses a marker without a reason).
RUNNABLE = [e for e in EXAMPLES if not e.skip]
BIN = Path(sys.executable).parent
SERVICES = {"hub", "node", "worker", "up", "celery"}
ONE_SHOT_FLAGS = {"--help", "-h", "--check", "--burst"}
STAY_UP = 4.0  # seconds a service must stay up to count as started

REDIS_URL = re.compile(
    r"rediss?://(?:[^\s@/]*@)?(?:redis|localhost|127\.0\.0\.1|host|HOST|redis-host|"
    r"redis\.example)(?::\d+)?(?:/\d+)?"
)
HUB_URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost|hub|HOST)(?::8080)?(?=[/\s'\"]|$)")
NODE_PATH = re.compile(r"(/api/nodes/)(?!\$)([a-z0-9][a-z0-9-]*)")
DEAD_PATH = re.compile(r"/api/tasks/([a-z0-9][a-z0-9-]*)/dead-letters")
TASK_PATH = re.compile(r"/api/tasks/([a-z0-9][a-z0-9-]*)|gridq doctor ([a-z0-9][a-z0-9-]*)")
# curl's -f (in -f, -fsS, ...): the runner adds --fail-with-body, which excludes it.
CURL_F = re.compile(r"(?<=\s)-([A-Za-z]*?)f([A-Za-z]*)(?=\s)")
BIND = re.compile(r"(--(?:hub-)?bind)\s+\S+")
NAME = re.compile(r'"name"\s*:\s*"([^"]+)"')
BODY = re.compile(r"-d\s+'(\{.*?\})'", re.S)


@dataclass
class Live:
    stack: Any
    work: Path
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    paper_node: str = ""
    n: int = 0

    @property
    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.stack.hub_url,
            headers={"Authorization": f"Bearer {self.stack.tokens['admin_token']}"},
            timeout=30,
        )

    def env(self) -> dict[str, str]:
        self.n += 1
        admin = self.stack.tokens["admin_token"]
        return {
            **os.environ,
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "HOME": str(self.work),
            "PYTHONPATH": str(self.work),
            "GRIDQ_STATE_DIR": str(self.stack.state),
            "GRIDQ_HUB_URL": self.stack.hub_url,
            "GRIDQ_HUB_TOKEN": admin,
            "GRIDQ_NODE_TOKEN": self.stack.tokens["node_token"],
            "GRIDQ_NODE_STATE_DIR": str(self.work / f"node-state-{self.n}"),
            "HUB": self.stack.hub_url,
            "AUTH": f"Authorization: Bearer {admin}",
            "REDIS_PASSWORD": "",
            "INSTANCE_ID": "docs-example-1",
        }

    def substitute(self, text: str) -> str:
        text = REDIS_URL.sub(self.stack.redis_url, text)
        text = HUB_URL.sub(self.stack.hub_url, text)
        text = text.replace("<admin token>", self.stack.tokens["admin_token"])
        text = BIND.sub(lambda m: f"{m.group(1)} 127.0.0.1:{free_port()}", text)
        if NODE_PATH.search(text):
            text = NODE_PATH.sub(lambda m: m.group(1) + self.paper(), text)
        return text

    def paper(self) -> str:
        """A registered node that never heartbeats, for the examples that stop or delete one."""
        with self.admin as c:
            if self.paper_node and c.get(f"/api/nodes/{self.paper_node}").status_code == 200:
                return self.paper_node
        info = {
            "hostname": "docs-example",
            "arch": "linux/amd64",
            "cpus": 1,
            "memory_mb": 1024,
            "runtime": "docker",
            "parallelism": 1,
            "version": "0",
        }
        r = httpx.post(
            f"{self.stack.hub_url}/api/node/register",
            json={"info": info},
            headers={"Authorization": f"Bearer {self.stack.tokens['node_token']}"},
        )
        r.raise_for_status()
        self.paper_node = r.json()["node_id"]
        return self.paper_node

    def fresh_task(self, body: dict[str, Any]) -> None:
        self.bodies[body["name"]] = body
        with self.admin as c:
            c.delete(f"/api/tasks/{body['name']}")

    def ensure_task(self, name: str) -> None:
        with self.admin as c:
            if c.get(f"/api/tasks/{name}?live=false").status_code == 200:
                return
            body = self.bodies.get(name) or {
                "name": name,
                "image": f"example/{name}:1",
                "input_redis": self.stack.redis_url,
                "input_queue": f"{name}-in",
            }
            r = c.post("/api/tasks", json=body)
            assert r.status_code == 201, r.text

    def gridq(self, *args: str, env: dict[str, str] | None = None) -> None:
        p = subprocess.run(
            [str(BIN / "gridq"), *args],
            cwd=self.work,
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, f"gridq {' '.join(args)}: exit {p.returncode}\n{p.stderr}"

    def ensure_dead_letters(self, name: str) -> None:
        """Give the task dead letters the way a user gets them: items its worker fails
        (the demo app's raw ``square`` handler raises ValueError on ``x``; no retries)."""
        with self.admin as c:
            page = c.get(f"/api/tasks/{name}/dead-letters", params={"limit": 1})
            page.raise_for_status()
            if page.json()["total"] > 0:
                return
            task = c.get(f"/api/tasks/{name}?live=false")
            task.raise_for_status()
        queue = task.json()["input_queue"]
        redis_url = self.stack.redis_url  # every example task's Redis is the stack's
        self.gridq("push", queue, "x", "x", "x", "--redis-url", redis_url)
        self.gridq(
            "worker",
            "gridq.examples.demo:app",
            "--burst",
            env={"INPUT_REDIS_URL": redis_url, "INPUT_QUEUE": queue},
        )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from gridq.localstack import Stack

    stack = Stack(state=tmp_path_factory.mktemp("stack"), runtime="process")
    stack.start()
    work = tmp_path_factory.mktemp("work")
    try:
        live = Live(stack, work)
        # The task docs/rest.md's and docs/schedules.md's schedules push to.
        live.gridq(
            "task",
            "register",
            "--name",
            "reports",
            "--image",
            "registry.example/acme/reports:1",
            "--input-redis",
            stack.redis_url,
            "--input-queue",
            "reports",
        )
        yield live
    finally:
        stack.stop()


def _is_service(cmd: str) -> bool:
    words = cmd.replace("\\\n", " ").split()
    while words and "=" in words[0] and words[0] != "gridq":
        words = words[1:]
    return (
        len(words) > 1
        and words[0] == "gridq"
        and words[1] in SERVICES
        and not ONE_SHOT_FLAGS & set(words)
    )


def _run_service(cmd: str, live: Live) -> None:
    log = live.work / f"service-{live.n + 1}.log"
    with open(log, "wb") as out:
        p = subprocess.Popen(
            ["bash", "-c", cmd],
            cwd=live.work,
            env=live.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            code = p.wait(STAY_UP)
        except subprocess.TimeoutExpired:
            return  # up and running: accepted
        assert code == 0, f"exited {code}:\n{log.read_text()[-3000:]}"
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(45)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _prepare(cmd: str, live: Live) -> None:
    """Give the command the state it assumes."""
    if re.search(r"/api/tasks['\"\s]", cmd + " ") and (m := BODY.search(cmd)):
        body = json.loads(m.group(1))
        live.fresh_task(body)
        return
    for found in TASK_PATH.findall(cmd):
        name = found[0] or found[1]
        if name not in ("next", "finish"):
            live.ensure_task(name)
    for name in DEAD_PATH.findall(cmd):
        live.ensure_dead_letters(name)


def run_command(ex: Example, live: Live) -> None:
    cmd = live.substitute(ex.text)
    _prepare(cmd, live)
    if cmd.lstrip().startswith("curl"):
        cmd = CURL_F.sub(lambda m: f"-{m[1]}{m[2]}" if m[1] + m[2] else "", cmd)
    if _is_service(cmd):
        _run_service(cmd, live)
        return
    script = f'set -o pipefail\ncurl() {{ command curl --fail-with-body -sS "$@"; }}\n{cmd}\n'
    p = subprocess.run(
        ["bash", "-c", script],
        cwd=live.work,
        env=live.env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"


def run_json(ex: Example, live: Live) -> None:
    try:
        body = json.loads(ex.text)
    except ValueError as exc:
        pytest.fail(f"not valid JSON ({exc}); mark it <!-- not-run: REASON --> if on purpose")
    body = json.loads(live.substitute(json.dumps(body)))
    if (
        isinstance(body, dict)
        and "name" in body
        and body.keys() & {"image", "images", "command", "kind"}
    ):
        live.fresh_task(body)
        with live.admin as c:
            r = c.post("/api/tasks", json=body)
        assert r.status_code == 201, r.text
    elif isinstance(body, dict) and "info" in body:
        r = httpx.post(
            f"{live.stack.hub_url}/api/node/register",
            json=body,
            headers={"Authorization": f"Bearer {live.stack.tokens['node_token']}"},
        )
        assert r.status_code == 200, r.text
    else:
        pytest.fail(
            "a JSON block that is no request body gridq takes: mark it "
            "<!-- not-run: REASON --> (an answer, a queue item, ...)"
        )


def test_examples_were_found() -> None:
    kinds = {e.kind for e in EXAMPLES}
    assert {"command", "json"} <= kinds, "the collector found no examples: is it broken?"
    assert any(e.path == "README.md" and e.kind == "command" for e in EXAMPLES)


@pytest.mark.parametrize("ex", RUNNABLE, ids=[e.id for e in RUNNABLE])
def test_doc_example(ex: Example, live: Live) -> None:
    if ex.kind == "file":
        name = ex.name or "example.py"
        if name.endswith(".toml"):
            tomllib.loads(ex.text)
        else:
            compile(ex.text, name, "exec")
        (live.work / name).write_text(ex.text)
    elif ex.kind == "json":
        run_json(ex, live)
    else:
        run_command(ex, live)
