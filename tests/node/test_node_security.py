"""The hub's transport and login defences on a real ``gridq hub`` (uvicorn):
HTTPS with an openssl-made CA (node and CLI trust it only through the CA file), and
the failed-login limit by client address (two source addresses on the loopback)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridq import keys
from gridq.hubtls import tls_context
from tests.support import wait_for
from tests.support.stack import GRIDQ, Hub

pytestmark = pytest.mark.slow


def make_ca_and_cert(openssl: str, folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a hub certificate for 127.0.0.1 signed by it: (ca, cert, key)."""

    def _openssl(*args: str, cwd: Path) -> None:
        subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=gridq test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", "hub.key", "-out", "hub.csr", "-subj", "/CN=127.0.0.1",
        cwd=folder,
    )  # fmt: skip
    (folder / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "x509", "-req", "-in", "hub.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "hub.pem", "-days", "2", "-extfile", "ext.cnf",
        cwd=folder,
    )  # fmt: skip
    return folder / "ca.pem", folder / "hub.pem", folder / "hub.key"


@pytest.fixture
def tls_hub(make_hub: Callable[..., Hub], tmp_path: Path, openssl: str) -> tuple[Hub, Path]:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = make_ca_and_cert(openssl, certs)
    hub = make_hub(
        scheme="https",
        verify=tls_context(ca),
        GRIDQ_HUB_TLS_CERT=str(cert),
        GRIDQ_HUB_TLS_KEY=str(key),
    )
    return hub, ca


def test_https_hub_node_with_ca_registers_without_is_refused(
    tls_hub: tuple[Hub, Path], make_agent: Any
) -> None:
    hub, ca = tls_hub
    assert hub.url.startswith("https://")
    trusted = make_agent(hub, runtime="process", ca_file=ca)
    node_id = trusted.node_id()
    wait_for(lambda: hub.node(node_id) is not None)

    untrusted = make_agent(hub, runtime="process")
    assert untrusted.wait(timeout=30) == 3  # EXIT_CONFIG: the operator must act
    log = untrusted.log()
    assert "the hub's TLS certificate is not trusted" in log, log[-2000:]
    assert "GRIDQ_NODE_CA_FILE" in log
    # Plain HTTP to the HTTPS port is no way round it.
    with pytest.raises(httpx.HTTPError):
        httpx.get(hub.url.replace("https://", "http://") + "/api/tasks", timeout=5)


def test_cli_trusts_the_hub_only_through_the_ca_file(tls_hub: tuple[Hub, Path]) -> None:
    hub, ca = tls_hub
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDQ_")}
    token = admin_token(hub)
    env.update(GRIDQ_HUB_URL=hub.url, GRIDQ_HUB_TOKEN=token)
    refused = subprocess.run(
        [GRIDQ, "task", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    assert "the hub's TLS certificate is not trusted" in refused.stderr, refused.stderr
    assert "GRIDQ_HUB_CA_FILE" in refused.stderr
    assert token not in refused.stderr + refused.stdout
    env["GRIDQ_HUB_CA_FILE"] = str(ca)
    ok = subprocess.run(
        [GRIDQ, "task", "list", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().startswith("[")


def admin_token(hub: Hub) -> str:
    return hub.http.headers["Authorization"].removeprefix("Bearer ")


def _client(hub: Hub, source: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=hub.url,
        headers={"Authorization": f"Bearer {token}"},
        transport=httpx.HTTPTransport(local_address=source),
        timeout=10,
    )


def test_failed_logins_from_one_address_get_429_others_do_not(
    make_hub: Callable[..., Hub],
) -> None:
    hub = make_hub()
    token = admin_token(hub)
    wrong = "wrong-" + "k" * 26
    with (
        _client(hub, "127.0.0.2", wrong) as attacker,
        _client(hub, "127.0.0.2", token) as attacker_right_token,
        _client(hub, "127.0.0.1", token) as other,
    ):
        codes = [attacker.get("/api/tasks").status_code for _ in range(25)]
        assert codes == [401] * 20 + [429] * 5, codes
        r = attacker.get("/api/tasks")
        assert r.status_code == 429
        assert 0 < int(r.headers["Retry-After"]) <= 60
        assert "127.0.0.2" in r.json()["detail"]
        # Blocked before its token is looked at: a right guess is not confirmed.
        assert attacker_right_token.get("/api/tasks").status_code == 429
        # The node join endpoint is behind the same limit.
        assert attacker.post("/api/node/register", json={}).status_code == 429
        assert other.get("/api/tasks").status_code == 200
        assert other.get("/api/audit").status_code == 200
    # The count is in the hub's Redis, where every replica reads it.
    import redis

    r2 = redis.Redis.from_url(hub.redis_url, decode_responses=True)
    assert int(r2.get(keys.hub_auth_failures("127.0.0.2")) or 0) == 20
    assert r2.get(keys.hub_auth_failures("127.0.0.1")) is None
    r2.close()
