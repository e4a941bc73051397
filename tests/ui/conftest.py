"""Dashboard fixtures: the hub tests' app factory (tests/hub/conftest.py) and helpers
(tests/hub/hub_helpers.py), reused, with a viewer token added."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

HUB_TESTS = Path(__file__).resolve().parents[1] / "hub"
sys.path.insert(0, str(HUB_TESTS))  # hub_helpers, imported by ui_helpers and the factory


def _hub_conftest() -> Any:
    # tests/ is not a package and every folder has a conftest.py: load the hub's by path.
    spec = importlib.util.spec_from_file_location("_gridq_hub_conftest", HUB_TESTS / "conftest.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


make_client = _hub_conftest().make_client


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    from ui_helpers import VIEWER

    return make_client(viewer_token=VIEWER)
