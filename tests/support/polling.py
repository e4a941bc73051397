"""The one polling helper: wait until a condition holds, or fail saying what it last saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    cond: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """Call `cond` every `interval` s until it returns a truthy value, and return that
    value; raise AssertionError (naming `what` and the last value) after `timeout` s.

    `cond` may raise AssertionError itself to stop early (a process that exited).
    Exceptions of the types in `ignoring` (a service still starting) count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = cond()
        except ignoring as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout}s (last value: {last!r})")
        time.sleep(interval)
