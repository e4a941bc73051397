"""deploy/compose.ha.yaml resolves (``docker-compose config``) and keeps its promises:
two hubs, a Redis master with a replica, three sentinels, nodes that list both hubs,
and no secret value in any service's configuration."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from gridq.hubs import parse_hub_urls
from gridq.redisurl import parse_multi
from tests.deploy.test_deploy_files import DEPLOY, _compose

SECRETS = {
    "REDIS_PASSWORD": "pw-for-ha-check",
    "GRIDQ_HUB_TOKEN": "hub-for-ha-check",
    "GRIDQ_NODE_TOKEN": "node-for-ha-check",
}


def _config(tmp_path: Path) -> dict[str, Any]:
    env_file = tmp_path / "ha.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    p = subprocess.run(
        [_compose(), "--env-file", str(env_file), "-f", str(DEPLOY / "compose.ha.yaml"),
         "-p", "hacheck", "config", "--format", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)  # type: ignore[no-any-return]


def test_compose_ha_resolves_with_two_hubs_a_replica_and_three_sentinels(
    tmp_path: Path,
) -> None:
    svc = _config(tmp_path)["services"]
    assert set(svc) == {
        "redis-master", "redis-replica", "sentinel1", "sentinel2", "sentinel3",
        "hub1", "hub2", "node",
    }  # fmt: skip
    assert "--replicaof redis-master 6379" in " ".join(svc["redis-replica"]["command"])
    for s in ("sentinel1", "sentinel2", "sentinel3"):
        cmd = " ".join(svc[s]["command"])
        assert "sentinel monitor gridq redis-master 6379 2" in cmd and "--sentinel" in cmd
    for h in ("hub1", "hub2"):
        url = svc[h]["environment"]["GRIDQ_HUB_REDIS_URL"]
        multi = parse_multi(url)
        assert multi is not None and multi.kind == "sentinel" and multi.master == "gridq"
        assert [host for host, _ in multi.hosts] == ["sentinel1", "sentinel2", "sentinel3"]
    published = {svc[h]["ports"][0]["published"] for h in ("hub1", "hub2")}
    assert published == {"8080", "8081"}
    hubs = parse_hub_urls(svc["node"]["environment"]["GRIDQ_HUB_URL"])
    assert hubs == ["http://hub1:8080", "http://hub2:8080"]
    assert "container_name" not in svc["node"] and "ports" not in svc["node"]
    for name, service in svc.items():
        text = json.dumps(service)
        for value in SECRETS.values():
            assert value not in text, f"{name} shows a secret value"
