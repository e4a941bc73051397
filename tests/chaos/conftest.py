"""Chaos suite fixtures. The scenarios live in bench/chaos.py (also `gridq bench chaos`,
the long form); these tests run them with short parameters. bench/chaos.py reuses the
node tests' helpers (tests/node/node_helpers.py) and tests/conftest.py's RedisServer."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "bench", ROOT / "tests" / "node", ROOT / "tests" / "hub"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


@pytest.fixture(scope="session")
def chaos(redis_binary: str) -> ModuleType:
    """bench/chaos.py (needs redis-server: redis_binary fails under CI when missing)."""
    import chaos as mod

    return mod
