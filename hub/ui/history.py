"""Chart history: per-task counters sampled into the hub's Redis every few seconds.

One hub replica samples each interval (SET NX on a per-interval slot key), so replicas
share one history and a restart loses nothing. Samples are compact strings in capped
LISTs (newest first): ``time,processed,failed,dead,depth,in_flight``. The latest
figures of every task also go to one HASH, so the task table reads 200 tasks in one
call instead of asking 200 task Redis servers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from gridq import keys
from gridq.outage import OutageLog

from ..store import Store
from . import data

log = logging.getLogger("gridq.hub.ui")

SAMPLE_EVERY = 5.0  # seconds between samples
KEEP = 900  # samples per list: 75 min at one per 5 s, so the 1 h chart is always full
COUNTERS = ("processed", "failed", "dead", "depth", "in_flight")


def encode(t: float, st: dict[str, Any]) -> str:
    return ",".join([f"{t:.1f}", *(str(int(st.get(c) or 0)) for c in COUNTERS)])


def decode(raw: str) -> tuple[float, ...]:
    return tuple(float(x) for x in raw.split(","))


def _rate(now: float, st: dict[str, Any], prev: str | None, field: str) -> float | None:
    if not prev:
        return None
    p = decode(prev)
    dt = now - p[0]
    if dt <= 0:
        return None
    i = 1 + COUNTERS.index(field)
    # A counter that went down was reset (stats hash deleted): no rate, not a negative one.
    return round(max(0.0, float(st.get(field) or 0) - p[i]) / dt, 3)


async def sample_once(store: Store, now: float | None = None) -> bool:
    """Take one sample unless another replica took this interval's; True if taken."""
    now = time.time() if now is None else now
    r = data.hub_redis(store)
    slot = int(now // SAMPLE_EVERY)
    if not await r.set(keys.hub_ui_sample_slot(slot), "1", nx=True, ex=int(SAMPLE_EVERY * 4)):
        return False
    specs = [rec.spec for rec in await data.task_records(store)]
    stats = await data.task_stats(store, specs)
    names = [s.name for s in specs]
    pipe = r.pipeline(transaction=False)
    for n in names:
        pipe.lindex(keys.hub_ui_history(n), 0)
    pipe.hkeys(keys.HUB_UI_LATEST)
    *prevs, known = await pipe.execute()
    total: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    pipe = r.pipeline(transaction=False)
    for name, prev in zip(names, prevs, strict=True):
        st = stats.get(name, {})
        latest = {k: v for k, v in st.items() if k != "last_claim"}
        latest["sampled_at"] = now
        if "error" not in st:
            latest["rate"] = _rate(now, st, prev, "processed")
            latest["fail_rate"] = _rate(now, st, prev, "failed")
            k = keys.hub_ui_history(name)
            pipe.lpush(k, encode(now, st))
            pipe.ltrim(k, 0, KEEP - 1)
            for c in COUNTERS:
                total[c] += int(st.get(c) or 0)
        pipe.hset(keys.HUB_UI_LATEST, name, json.dumps(latest))
    for gone in set(known) - set(names):
        pipe.hdel(keys.HUB_UI_LATEST, gone)
        pipe.delete(keys.hub_ui_history(gone))
    pipe.lpush(keys.HUB_UI_TOTALS, encode(now, total))
    pipe.ltrim(keys.HUB_UI_TOTALS, 0, KEEP - 1)
    await pipe.execute()
    return True


async def latest(store: Store, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The last sampled figures: of ``names``, or of every task."""
    r = data.hub_redis(store)
    if names is None:
        raw = await r.hgetall(keys.HUB_UI_LATEST)
    else:
        raw = (
            dict(zip(names, await r.hmget(keys.HUB_UI_LATEST, names), strict=True)) if names else {}
        )
    return {n: json.loads(v) for n, v in raw.items() if v}


async def series(store: Store, task: str | None, seconds: float) -> dict[str, list[float]]:
    """Chart data over the last ``seconds``, oldest first: time, processed/s, failed/s
    (between consecutive samples), depth and dead."""
    n = int(seconds / SAMPLE_EVERY) + 1
    key = keys.hub_ui_history(task) if task else keys.HUB_UI_TOTALS
    raw = await data.hub_redis(store).lrange(key, 0, n - 1)
    rows = [decode(x) for x in reversed(raw)]
    cutoff = time.time() - seconds
    out: dict[str, list[float]] = {k: [] for k in ("t", "processed", "failed", "depth", "dead")}
    for prev, cur in zip(rows, rows[1:], strict=False):
        dt = cur[0] - prev[0]
        if cur[0] < cutoff or dt <= 0:
            continue
        out["t"].append(cur[0])
        out["processed"].append(round(max(0.0, cur[1] - prev[1]) / dt, 3))
        out["failed"].append(round(max(0.0, cur[2] - prev[2]) / dt, 3))
        out["dead"].append(cur[3])
        out["depth"].append(cur[4])
    return out


async def run(store: Store) -> None:
    """The background loop: one sample per interval, on interval boundaries, so replicas
    compete for the same slot."""
    outage = OutageLog(log, up_message="dashboard sampling works again after %.1f s")
    while True:
        await asyncio.sleep(SAMPLE_EVERY - time.time() % SAMPLE_EVERY + 0.05)
        try:
            await sample_once(store)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep sampling through a Redis outage
            outage.down(f"dashboard sampling failed: {exc}")
        else:
            outage.up()
