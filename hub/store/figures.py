"""Live figures from the tasks' own Redis: queue depth and counters, sampled rates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import anyio.to_thread
import redis
import redis.asyncio as aioredis

from gridq import keys
from gridq.queue import Queue
from gridq.redisurl import client as redis_client
from gridq.redisurl import explain, mask_text

from ..config import HubSettings
from ..models import LiveFigures, TaskSpec
from .specs import celery_queues

RATE_SAMPLE_EVERY = 5.0  # seconds between rate samples
RATE_SAMPLES = 60  # kept per task (5 minutes at one per 5 s)
RATE_WINDOW = 60.0  # seconds the rate is averaged over


class Figures:
    def __init__(self, r: aioredis.Redis, settings: HubSettings) -> None:
        self.r = r
        self.settings = settings
        # Sync clients to the tasks' own Redis servers; a cache of connections, not state.
        self._task_clients: dict[str, redis.Redis] = {}

    def close(self) -> None:
        for c in self._task_clients.values():
            c.close()
        self._task_clients.clear()

    def queue(self, url: str, name: str) -> Queue:
        conn = self._task_clients.get(url)
        if conn is None:
            t = self.settings.stats_timeout
            conn = redis_client(url, timeout=t, health_check_interval=0, retry_on_timeout=False)
            self._task_clients[url] = conn
        return Queue(conn, name, url=url)

    def _celery_stats(self, spec: TaskSpec) -> dict[str, Any]:
        """Celery tasks: depth from kombu's lists (priority lists included), counters from
        the gridq stats hash the Celery instrumentation keeps, per queue, summed."""
        from gridq.celery_depth import celery_queue_depth_detail

        total: dict[str, Any] = {}
        for name in celery_queues(spec):
            q = self.queue(spec.input_redis, name)
            st = dict(q.stats())
            d = celery_queue_depth_detail(q.conn, name)
            st["depth"], st["in_flight"], st["oldest_age"] = d["waiting"], d["unacked"], None
            for k, v in st.items():
                if isinstance(v, int | float) and k not in ("last_claim",):
                    total[k] = total.get(k, 0) + v
                elif k not in total:
                    total[k] = v
        return total

    def _stats_sync(self, spec: TaskSpec) -> dict[str, Any]:
        try:
            if spec.kind == "celery":
                return self._celery_stats(spec)
            return dict(self.queue(spec.input_redis, spec.input_queue).stats())
        except Exception as exc:
            err = explain(exc, spec.input_redis)
            msg = str(err) if err else f"cannot read queue figures: {type(exc).__name__}"
            return {"error": mask_text(msg)}

    async def stats(self, spec: TaskSpec) -> dict[str, Any]:
        if not spec.input_queue:
            return {"error": "the task has no input queue"}
        return await anyio.to_thread.run_sync(self._stats_sync, spec)

    async def stats_many(self, specs: Iterable[TaskSpec]) -> dict[str, dict[str, Any]]:
        specs = list(specs)
        results = await asyncio.gather(*(self.stats(s) for s in specs))
        return {s.name: r for s, r in zip(specs, results, strict=True)}

    async def live(self, spec: TaskSpec, st: dict[str, Any] | None = None) -> LiveFigures:
        st = st if st is not None else await self.stats(spec)
        if "error" in st:
            return LiveFigures(error=st["error"])
        rate = await self._rate(spec.name, float(st.get("processed") or 0))
        fields = {k: st.get(k) for k in LiveFigures.model_fields if k not in ("rate", "error")}
        return LiveFigures(**fields, rate=rate)

    async def _rate(self, name: str, processed_now: float) -> float | None:
        now = time.time()
        samples = await self.r.lrange(keys.hub_task_rate(name), 0, -1)
        oldest: tuple[float, float] | None = None
        for s in samples:  # newest first; keep the oldest inside the window
            t, p = (float(x) for x in s.split(":", 1))
            if now - t <= RATE_WINDOW:
                oldest = (t, p)
        if oldest is None or now - oldest[0] < 1.0:
            return None
        return round(max(0.0, processed_now - oldest[1]) / (now - oldest[0]), 3)

    async def sample_rates(self, stats: dict[str, dict[str, Any]]) -> None:
        now = time.time()
        last = await self.r.hget(keys.HUB_STATE, "rate_sampled_at")
        if last and now - float(last) < RATE_SAMPLE_EVERY:
            return
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(keys.HUB_STATE, "rate_sampled_at", str(now))
        for name, st in stats.items():
            if "error" in st:
                continue
            k = keys.hub_task_rate(name)
            pipe.lpush(k, f"{now}:{int(st.get('processed') or 0)}")
            pipe.ltrim(k, 0, RATE_SAMPLES - 1)
        await pipe.execute()
