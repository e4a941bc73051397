"""Every Lua script gridq runs names its keys through KEYS only (Redis Cluster routes a
script by its declared keys): no key built inside Lua, no KEYS or SCAN command."""

from __future__ import annotations

import re

import pytest

from gridq import queue
from gridq.hub import leader
from gridq.hub.store import schedule_push, schedules
from gridq.hub.store import scripts as hub_scripts
from gridq.worker import broker

SCRIPTS = {
    **{
        f"broker.{n}": getattr(broker, n)
        for n in ("CLAIM", "SETTLE", "REQUEUE", "REAP", "PROMOTE", "LEAVE")
    },
    **{
        f"hub.{n}": v
        for n, v in vars(hub_scripts).items()
        if n.isupper() and isinstance(v, str) and "redis.call" in v
    },
    "queue._RETRY_ONE": queue._RETRY_ONE,
    **{f"leader.{n}": getattr(leader, n) for n in ("ACQUIRE_OR_RENEW", "RELEASE")},
    **{f"schedules.{n}": getattr(schedules, n) for n in ("CREATE", "UPDATE", "CLAIM", "COMPLETE")},
    "schedule_push.PUSH_ONCE": schedule_push.PUSH_ONCE,
}
_CALL = re.compile(r"redis\.call\('(\w+)',\s*([^,)]+)")
# ``local a, b = KEYS[11], KEYS[k + 1]``: variables that hold keys (the index may be
# a counter over the per-job keys).
_FROM_KEYS = re.compile(r"local ([\w, ]+) =\s*(KEYS\[[\w +]+\](?:,\s*KEYS\[[\w +]+\])*)")


def test_every_script_is_audited() -> None:
    assert len(SCRIPTS) >= 12


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_takes_every_key_through_keys(name: str) -> None:
    lua = SCRIPTS[name]
    assert "gridq:" not in lua  # no key prefix: names come from gridq/keys.py
    key_vars = {v.strip() for m in _FROM_KEYS.finditer(lua) for v in m.group(1).split(",")}
    calls = _CALL.findall(lua)
    assert calls
    for cmd, first in calls:
        assert cmd.upper() not in {"KEYS", "SCAN"}
        first = first.strip()
        assert first.startswith("KEYS[") or first.startswith("target(") or first in key_vars, (
            f"{name}: {cmd} {first}"
        )
