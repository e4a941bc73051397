"""Doctor fixtures: a real hub (uvicorn on a free port, in a thread) on the session's Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from doctor_helpers import LiveHub


@pytest.fixture
def live_hub(redis_conn: Any, redis_url: str) -> Iterator[LiveHub]:
    hub = LiveHub(redis_url)
    hub.start()
    yield hub
    hub.stop()
