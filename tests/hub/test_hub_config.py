"""Start-up: tokens required (no placeholders) unless --insecure-dev; the CLI command."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hub_helpers import ADMIN, JOIN, node_info

from gridq.cli.hub_cmd import hub
from gridq.errors import ConfigError
from gridq.hub.config import HubSettings, check_tokens, split_bind
from gridq.hub.main import create_app
from gridq.settings import load


@pytest.mark.parametrize(
    ("admin", "join", "why"),
    [
        (None, JOIN, "GRIDQ_HUB_TOKEN is not set"),
        (ADMIN, None, "GRIDQ_NODE_TOKEN is not set"),
        ("changeme", JOIN, "shorter than 16"),
        ("changeme-changeme-1", JOIN, "placeholder"),
        ("my-secret-value-123", JOIN, "placeholder"),
        (ADMIN, "aaaaaaaaaaaaaaaaaaaa", "distinct"),
        (ADMIN, ADMIN, "must differ"),
    ],
)
def test_refuses_weak_tokens(admin: str | None, join: str | None, why: str) -> None:
    s = HubSettings(token=admin, node_token=join)
    with pytest.raises(ConfigError) as exc:
        create_app(s)
    assert why in str(exc.value)
    for t in (admin, join):
        if t and len(t) >= 16:
            assert t not in str(exc.value)  # never echo a token


@pytest.mark.parametrize(
    "token",
    [
        # What `openssl rand -hex 24` and token_urlsafe can give: random, yet holding
        # a placeholder's letters. About one hex draw in 1,500 holds "1234".
        "9f3e51234c0d8a7b6e2f4a9c1d3b5e7f0a2c4e6f8a1b3d5e",
        "Qx7-kLXxXxp2Rz9Tm4Wv8Yb1Nc6Hd3Jf5Gs0AdMiNe2",
        "prod-admin-" + "5c1f9e0b7d2a4c6e8f1a3b5d",
    ],
)
def test_accepts_strong_tokens_that_hold_a_placeholders_letters(token: str) -> None:
    assert check_tokens(HubSettings(token=token, node_token=JOIN)) == []


def test_insecure_dev_warns_loudly(caplog: pytest.LogCaptureFixture, redis_url: str) -> None:
    with caplog.at_level(logging.WARNING, logger="gridq.hub"):
        app = create_app(HubSettings(redis_url=redis_url, insecure_dev=True), background=False)
    assert "INSECURE DEV MODE" in caplog.text
    with TestClient(app) as c:  # open API in dev mode
        assert c.get("/api/tasks").status_code == 200
        assert c.post("/api/node/register", json={"info": node_info()}).status_code == 200


def test_tokens_never_logged(
    caplog: pytest.LogCaptureFixture, redis_url: str, redis_conn: object
) -> None:
    with caplog.at_level(logging.DEBUG):
        app = create_app(
            HubSettings(redis_url=redis_url, token=ADMIN, node_token=JOIN), background=False
        )
        with TestClient(app) as c:
            c.get("/api/tasks", headers={"Authorization": f"Bearer {ADMIN}"})
            r = c.post(
                "/api/node/register",
                json={"info": node_info()},
                headers={"Authorization": f"Bearer {JOIN}"},
            )
            secret = r.json()["secret"]
    assert ADMIN not in caplog.text and JOIN not in caplog.text and secret not in caplog.text


def test_env_and_toml(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    cfg = Path(str(tmp_path)) / "gridq.toml"
    cfg.write_text(
        '[hub]\nbind = "127.0.0.1:9000"\nscheduling = "sequential"\nheartbeat_interval = 2.5\n'
    )
    monkeypatch.setenv("GRIDQ_HUB_TOKEN", ADMIN)
    monkeypatch.setenv("GRIDQ_NODE_TOKEN", JOIN)
    monkeypatch.setenv("GRIDQ_HUB_SCHEDULING", "parallel")
    s = load(HubSettings, cfg, bind="0.0.0.0:1234")
    assert s.bind == "0.0.0.0:1234"  # flag > TOML
    assert s.scheduling == "parallel"  # env > TOML
    assert s.heartbeat_interval == 2.5 and s.offline_after == 7.5
    assert s.admin_token() == ADMIN and check_tokens(s) == []
    cfg.write_text("[hub]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load(HubSettings, cfg)


def test_split_bind() -> None:
    assert split_bind("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert split_bind("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError):
        split_bind("8080")


def test_cli_refuses_without_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRIDQ_HUB_TOKEN", raising=False)
    monkeypatch.delenv("GRIDQ_NODE_TOKEN", raising=False)
    r = CliRunner().invoke(hub, ["--bind", "127.0.0.1:1"])
    assert r.exit_code != 0 and "refuses to start" in r.output
    assert "--bind" in CliRunner().invoke(hub, ["--help"]).output
