"""Chaos suite fixtures. The scenarios live in bench/chaos.py (also `gridq bench chaos`,
the long form); these tests run them with short parameters. bench/chaos.py builds its
grid from tests/support (RedisServer, the stack's Hub and AgentProc)."""

from __future__ import annotations

from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def chaos(redis_binary: str) -> ModuleType:
    """bench/chaos.py (needs redis-server: redis_binary fails under CI when missing)."""
    from bench import chaos as mod

    return mod
