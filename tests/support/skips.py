"""The one way a test skips: `need(reason)`.

On a laptop a missing tool (Redis, Docker, openssl, an image) skips the test with the
reason; under CI (the `CI` variable set to 1/true/yes, as every CI service and .ci/run
do) it fails instead, so a broken install shows as a failure, never as a quiet skip.
tests/support/ci_guard.py also fails the session on any skip that bypasses this."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need(reason: str) -> NoReturn:
    """Skip on a laptop, fail under CI."""
    if in_ci():
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)
