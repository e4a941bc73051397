"""The producer's and inspector's view of a queue: enqueue, stats, dead letters.

Workers consume through gridq.worker.broker; this module is what code that does not
import the handlers uses (``Queue.from_url(url, "name").enqueue("add", 2, 3)``), and
what the hub and the CLI read queue figures from.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import redis

from gridq import durability, jobs, protocol
from gridq.jobs import JobHandle
from gridq.keys import QueueKeys
from gridq.redisurl import client, mask
from gridq.signing import Signer

STAT_FIELDS = ("processed", "failed", "retried", "dead")


class Queue:
    def __init__(
        self,
        conn: redis.Redis,
        name: str,
        *,
        url: str | None = None,
        min_replicas: int | None = None,
    ) -> None:
        self.conn = conn
        self.name = name
        self.keys = QueueKeys(name)
        self._url = url
        self._enqueue: Any = None  # the enqueue script, registered on first use
        # Replicas an enqueue waits for (WAIT); see gridq/durability.py.
        self.min_replicas = durability.min_replicas(url, min_replicas)

    @classmethod
    def from_url(cls, url: str, name: str, **kw: Any) -> Queue:
        return cls(client(url, **kw), name, url=url)

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, url={mask(self._url)!r})"

    @property
    def url(self) -> str | None:
        """The URL this queue was opened with (None when built from a connection)."""
        return self._url

    def job(self, job_id: str) -> JobHandle:
        """The handle of job ``job_id`` in this queue (from any process)."""
        return JobHandle(self, str(job_id))

    # --- producing ------------------------------------------------------------------

    @functools.cached_property
    def signer(self) -> Signer:
        """Signs envelopes when GRIDQ_SIGNING_KEY is set (read on first use)."""
        return Signer.from_env()

    def enqueue(
        self,
        task: str,
        *args: Any,
        _priority: int = 0,
        _delay: float | None = None,
        _eta: datetime | None = None,
        _retries: int | None = None,
        _timeout: float | None = None,
        _job_id: str | None = None,
        _key: str | None = None,
        _unique_for: float | None = None,
        _result_ttl: int | None = None,
        **kwargs: Any,
    ) -> JobHandle:
        """Enqueue a named task; returns its JobHandle (``str(handle)`` is the id).

        ``_priority`` 1..9 runs before 0 (higher first); ``_delay`` seconds or ``_eta``
        (an aware datetime) hold it back; ``_key`` makes it unique in this queue while
        it waits or runs (and ``_unique_for`` seconds after): enqueueing the same key
        again returns the existing job's handle. ``_result_ttl`` (default
        ``GRIDQ_RESULT_TTL``, 86400) is how long its record lives; 0 keeps none."""
        job_id = jobs.check_job_id(_job_id) if _job_id else protocol.new_id()
        if not 0 <= _priority <= protocol.MAX_PRIORITY:
            raise ValueError(f"priority must be 0..{protocol.MAX_PRIORITY}")
        due = jobs.due_time(_delay, _eta)
        ttl = jobs.default_result_ttl() if _result_ttl is None else int(_result_ttl)
        if ttl < 0:
            raise ValueError("result_ttl must be >= 0 seconds")
        if _unique_for is not None and _unique_for < 0:
            raise ValueError("unique_for must be >= 0 seconds")
        if _key is not None and ttl == 0:
            ttl = max(1, int(_unique_for or 0))  # the unique key lives with the record
        now = time.time()
        item = protocol.encode(
            task,
            args,
            kwargs,
            job_id=job_id,
            retries=_retries,
            timeout=_timeout,
            priority=_priority,
            enqueued_at=now,
            result_ttl=ttl or None,
            key=_key,
            unique_for=_unique_for,
        )
        item = self.signer.sign(item)
        if not ttl:
            self.push_items([item], priority=_priority, due=due)
            return JobHandle(self, job_id)
        k = self.keys
        if due is not None:
            target = k.delayed
        else:
            target = k.priority(_priority) if _priority else k.pending
        # The record outlives the wait: a job due in 3 days keeps it until it ran.
        record_ttl = ttl + max(0, int((due or now) - now) + 1)
        if self._enqueue is None:
            self._enqueue = self.conn.register_script(jobs.ENQUEUE)  # EVALSHA from now on
        script = self._enqueue
        keys = [target, k.job(job_id), k.unique(_key) if _key is not None else k.job(job_id)]
        script_args: list[Any] = [
            item,
            job_id,
            record_ttl,
            jobs.SCHEDULED if due is not None else jobs.QUEUED,
            repr(now),
            task,
            repr(due) if due is not None else "",
            _key if _key is not None else "",
            repr(float(_unique_for or 0)),
            ttl,
        ]
        holder = durability.replicated(
            self.conn,
            target,
            self.min_replicas,
            lambda c: script(keys=keys, args=script_args, client=c),
        )
        return JobHandle(self, holder.decode() if isinstance(holder, bytes) else str(holder))

    def push_raw(self, *items: bytes | str) -> int:
        """LPUSH raw items in order (the first given runs first); returns the new depth."""
        data = [i.encode() if isinstance(i, str) else i for i in items]
        return self.push_items(data)

    def push_items(
        self,
        items: Iterable[bytes],
        *,
        priority: int = 0,
        delay: float | None = None,
        due: float | None = None,
    ) -> int:
        """Push ready-made items (no job records); ``delay`` seconds or ``due`` unix time."""
        items = list(items)
        if not items:
            return 0
        if not 0 <= priority <= protocol.MAX_PRIORITY:
            raise ValueError(f"priority must be 0..{protocol.MAX_PRIORITY}")
        if delay:
            due = time.time() + delay
        if due is not None:
            key = self.keys.delayed
            at = due
            write: Callable[[Any], Any] = lambda c: c.zadd(key, {i: at for i in items})  # noqa: E731
        else:
            key = self.keys.priority(priority) if priority else self.keys.pending
            write = lambda c: c.lpush(key, *items)  # noqa: E731
        return int(durability.replicated(self.conn, key, self.min_replicas, write))

    # --- inspecting -----------------------------------------------------------------

    def stats(self) -> dict[str, int | float | None]:
        """depth, in_flight, delayed, dead, processed, failed, retried, consumers, oldest_age."""
        k = self.keys
        now = time.time()
        consumers = [
            c.decode() if isinstance(c, bytes) else c for c in self.conn.zrange(k.consumers, 0, -1)
        ]
        pipe = self.conn.pipeline(transaction=False)
        pipe.llen(k.pending)
        for level in range(1, protocol.MAX_PRIORITY + 1):
            pipe.llen(k.priority(level))
        pipe.zcard(k.delayed)
        pipe.llen(k.dead)
        pipe.hgetall(k.stats)
        pipe.lindex(k.pending, -1)
        pipe.get(k.last_claim)
        for c in consumers:
            pipe.llen(k.inflight(c))
        res = pipe.execute()
        depth = sum(int(x) for x in res[: protocol.MAX_PRIORITY + 1])
        i = protocol.MAX_PRIORITY + 1
        delayed, dead, counters, oldest, last_claim = res[i : i + 5]
        in_flight = sum(int(x) for x in res[i + 5 :])
        counters = {
            (f.decode() if isinstance(f, bytes) else f): int(v) for f, v in counters.items()
        }
        oldest_age: float | None = None
        if oldest is not None:
            try:
                job = protocol.decode(oldest)
                if job.enqueued_at:
                    oldest_age = max(0.0, now - job.enqueued_at)
            except protocol.MalformedJob:
                pass
        out: dict[str, int | float | None] = {
            "depth": depth,
            "in_flight": in_flight,
            "delayed": int(delayed),
            "dead": int(dead),
            "consumers": len(consumers),
            "oldest_age": oldest_age,
            "last_claim": float(last_claim) if last_claim else None,
        }
        for f in STAT_FIELDS:
            out.setdefault(f, counters.get(f, 0))
        return out

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Dead jobs, newest first, each with its error type, message and traceback."""
        out = []
        for raw in self.conn.lrange(self.keys.dead, 0, limit - 1):
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"error": "unreadable dead-letter record", **protocol.item_text(raw)})
        return out

    def retry_dead(self, limit: int | None = None) -> int:
        """Move dead jobs back to the queue (oldest first); returns how many moved."""
        moved = 0
        while limit is None or moved < limit:
            # Atomic per record: never in neither list, never in both.
            rec = self.conn.eval(_RETRY_ONE, 2, self.keys.dead, self.keys.pending)
            if rec is None:
                break
            moved += 1
        return moved

    def purge_dead(self) -> int:
        n = int(self.conn.llen(self.keys.dead))
        self.conn.delete(self.keys.dead)
        return n

    def pause(self) -> None:
        self.conn.set(self.keys.paused, "1")

    def resume(self) -> None:
        self.conn.delete(self.keys.paused)


# Pops the oldest dead record and LPUSHes its original item: one step, so a crash
# between the two cannot lose or duplicate it.
_RETRY_ONE = """
local rec = redis.call('RPOP', KEYS[1])
if not rec then return nil end
local ok, body = pcall(cjson.decode, rec)
local item
if ok and type(body) == 'table' then
  if body['item_b64'] then
    item = body['item_b64']
    -- base64 is decoded in Lua below
    local b = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
    item = string.gsub(item, '[^'..b..'=]', '')
    item = (item:gsub('.', function(x)
      if (x == '=') then return '' end
      local r,f='',(b:find(x)-1)
      for i=6,1,-1 do r=r..(f%2^i-f%2^(i-1)>0 and '1' or '0') end
      return r;
    end):gsub('%d%d%d?%d?%d?%d?%d?%d?', function(x)
      if (#x ~= 8) then return '' end
      local c=0
      for i=1,8 do c=c+(x:sub(i,i)=='1' and 2^(8-i) or 0) end
      return string.char(c)
    end))
  else
    item = body['item']
  end
end
if not item then item = rec end
redis.call('LPUSH', KEYS[2], item)
return 1
"""
