"""The audit trail: who changed what through the API, in a Redis stream (GET /api/audit).

One entry per change: time, actor (``admin``, ``viewer``, ``node:<id>``), the index of
the token used (never its value), action, target, client address. The stream is capped
at ``audit_max_entries`` and entries older than ``audit_retention_days`` are dropped on
each write (exact trimming: changes are rare, so each write drops at most a few). Stream ids are milliseconds,
so ``since`` is a range bound and needs no index.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

from gridq import keys
from gridq.redisurl import mask_text

from ..config import HubSettings
from .base import dumps

DAY = 86_400.0


class Audit:
    def __init__(self, r: aioredis.Redis, settings: HubSettings) -> None:
        self.r = r
        self.max_entries = settings.audit_max_entries
        self.retention = settings.audit_retention_days * DAY

    async def record(
        self,
        *,
        actor: str,
        token_index: int | None,
        action: str,
        target: str,
        client: str | None,
        detail: str | None = None,
    ) -> None:
        now = time.time()
        entry = {
            "time": now,
            "actor": actor,
            "token_index": token_index,
            "action": action,
            "target": mask_text(target),
            "client": client,
        }
        if detail:
            entry["detail"] = mask_text(detail)
        oldest = f"{int((now - self.retention) * 1000)}-0"
        pipe = self.r.pipeline(transaction=False)
        pipe.xadd(keys.HUB_AUDIT, {"r": dumps(entry)}, maxlen=self.max_entries, approximate=False)
        pipe.xtrim(keys.HUB_AUDIT, minid=oldest, approximate=False)
        await pipe.execute()

    async def read(
        self, since: float | None = None, limit: int = 100, before: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; only entries at or after ``since`` (unix seconds) when given, and
        older than the entry id ``before`` (the next page) when given."""
        low = f"{int(since * 1000)}-0" if since is not None else "-"
        high = f"({before}" if before else "+"
        rows = await self.r.xrevrange(keys.HUB_AUDIT, high, low, count=limit)
        out = []
        for entry_id, fields in rows:
            rec: dict[str, Any] = json.loads(fields["r"])
            rec["id"] = entry_id
            out.append(rec)
        return out
