"""``GRIDQ_HUB_URL`` as a list: parsing, the node's settings, and the CLI taking the
first hub that answers (a real HTTP server stands in for the live hub)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gridq.errors import ConfigError
from gridq.hubs import first_answering, parse_hub_urls
from gridq.node.config import NodeSettings
from gridq.ports import free_port


@pytest.fixture
def live_hub(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "health").write_text("ok")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(5)


def test_parse_hub_urls() -> None:
    assert parse_hub_urls(" http://h1:8080/ , https://h2 ") == ["http://h1:8080", "https://h2"]
    with pytest.raises(ValueError, match="not http"):
        parse_hub_urls("http://h1:8080,h2:8080")
    with pytest.raises(ValueError, match="twice"):
        parse_hub_urls("http://h1,http://h1/")
    with pytest.raises(ValueError, match="no hub"):
        parse_hub_urls(" , ")


def test_node_settings_take_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from gridq.settings import load

    monkeypatch.setenv("GRIDQ_HUB_URL", "http://h1:8080,http://h2:8080")
    s = load(NodeSettings, None)
    assert s.hub_urls == ["http://h1:8080", "http://h2:8080"]
    monkeypatch.setenv("GRIDQ_HUB_URL", "http://h1:8080,ftp://h2")
    with pytest.raises(ConfigError, match="GRIDQ_HUB_URL.*ftp"):
        load(NodeSettings, None)


def test_cli_takes_the_first_hub_that_answers(live_hub: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    assert first_answering([dead, live_hub], timeout=1) == live_hub
    assert first_answering([live_hub, dead], timeout=1) == live_hub
    # None answers: the first, so the caller's error names it.
    other = f"http://127.0.0.1:{free_port()}"
    assert first_answering([dead, other], timeout=1) == dead
