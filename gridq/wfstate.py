"""Workflow state in Redis: barriers, and how a finished member reports to its barrier.

A *barrier* (docs/workflows.md) waits for ``n`` members and then fires one thing: the
next chain step, the chord callback (both enqueued as jobs), or a group's record
(written finished, with the ordered results). It lives in the slot of the queue where
the thing it fires lives, so the count, the results and the firing are ONE script:
the job it fires is enqueued exactly once (``HSETNX fired``), whichever member came
last and however often a member ran.

A member's envelope carries ``wf`` (keys: ``q`` barrier queue, ``s`` barrier id,
``i`` member index, ``x`` id of the job the barrier fires, ``k`` kind chain / chord /
group, ``p`` its priority, ``f`` [queue, id] of a chain's final job). When the member
finishes (succeeded, dead or cancelled) its worker runs ``report`` BEFORE the settle
script acknowledges it: a crash between the two runs the member again, and its second
report finds its index in the ``done`` SET already (SADD returns 0): it never counts
twice. Members in other queues or slots are fine: the report is its own script call,
on the barrier's slot only (no cross-slot script, Redis Cluster safe).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from gridq import jobs
from gridq.failure import Failure
from gridq.keys import QueueKeys
from gridq.redisurl import is_cluster

log = logging.getLogger("gridq.workflows")

CHAIN, CHORD, GROUP = "chain", "chord", "group"
WAITING = jobs.WAITING

# KEYS: barrier, done SET, results HASH, target list, record of the job it fires, that
#   record's done list, its queue's waiting ZSET. ARGV: member index, value (JSON), now,
#   the fired job's id.
# Returns -1 (no such barrier: expired), 0 (waits for more), 1 (fired now), 2 (fired before).
STEP = """
local meta = redis.call('HMGET', KEYS[1], 'n', 'mode', 'head', 'tail1', 'tail2', 'ttl')
local n = tonumber(meta[1])
if not n then return -1 end
local ttl = tonumber(meta[6])
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
if redis.call('SCARD', KEYS[2]) < n then return 0 end
if redis.call('HSETNX', KEYS[1], 'fired', ARGV[3]) == 0 then return 2 end
local vals
if meta[2] == 'chain' then
  vals = redis.call('HGET', KEYS[3], '0') or 'null'
else
  local parts = {}
  for s = 0, n - 1, 1000 do
    local idx = {}
    for j = s, math.min(n, s + 1000) - 1 do idx[#idx + 1] = tostring(j) end
    for _, v in ipairs(redis.call('HMGET', KEYS[3], unpack(idx))) do
      parts[#parts + 1] = v or 'null'
    end
  end
  vals = '[' .. table.concat(parts, ',') .. ']'
end
local cur = redis.call('HGET', KEYS[5], 'status')
if meta[2] == 'group' then
  if cur ~= 'cancelled' then
    redis.call('HSET', KEYS[5], 'status', 'succeeded', 'result', vals, 'finished_at', ARGV[3],
      'attempts', 1)
    redis.call('EXPIRE', KEYS[5], ttl)
    if redis.call('ZREM', KEYS[7], ARGV[4]) == 1 then  -- a get() waits for it
      redis.call('RPUSH', KEYS[6], 'succeeded')
      redis.call('EXPIRE', KEYS[6], ttl)
    end
  end
  return 1
end
redis.call('LPUSH', KEYS[4], meta[3] .. vals .. meta[4] .. ARGV[3] .. meta[5])
if cur ~= 'cancelled' then
  redis.call('HSET', KEYS[5], 'status', 'queued', 'enqueued_at', ARGV[3])
  redis.call('EXPIRE', KEYS[5], ttl)
end
return 1
"""

# KEYS: a chain's final job record, its done list, its queue's waiting ZSET.
# ARGV: now, error_type, error, the final job's id.
# A chain step went dead: the chain's final job will never run; its record says why.
FAIL = """
local cw = redis.call('HMGET', KEYS[1], 'status', 'ttl')
local st = cw[1]
if not st or st == 'succeeded' or st == 'dead' or st == 'cancelled' then return 0 end
local ttl = tonumber(cw[2]) or 86400
redis.call('HSET', KEYS[1], 'status', 'dead', 'error_type', ARGV[2], 'error', ARGV[3],
  'finished_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ttl)
if redis.call('ZREM', KEYS[3], ARGV[4]) == 1 then
  redis.call('RPUSH', KEYS[2], 'dead')
  redis.call('EXPIRE', KEYS[2], ttl)
end
return 1
"""


@dataclass(slots=True)
class Step:
    """A finished workflow member: its ``wf`` metadata and how it ended."""

    wf: dict[str, Any]
    ok: bool
    value: str | None  # the result as JSON (ok), else unused
    error_type: str = ""
    error: str = ""


def _plan(st: Step, now: str) -> tuple[str, list[str], list[str], str] | None:
    """(script, keys, args, barrier) for one finished member; None: nothing to report.
    Raises KeyError/TypeError/ValueError on metadata gridq did not write."""
    wf = st.wf
    if not st.ok and wf.get("k") == CHAIN:
        fq, fid = wf["f"]
        fk = QueueKeys(str(fq))
        msg = f"chain step {wf.get('i', '?')} failed: {st.error}"
        keys = [fk.job(str(fid)), fk.done(str(fid)), fk.waiting]
        return FAIL, keys, [now, st.error_type, msg, str(fid)], ""
    if "s" not in wf:
        return None  # a chord callback or a chain's last step: its own record is enough
    k = QueueKeys(str(wf["q"]))
    stage, nxt = str(wf["s"]), str(wf["x"])
    prio = int(wf.get("p") or 0)
    target = k.priority(prio) if 1 <= prio <= 9 else k.pending
    value = st.value if st.ok else Failure(st.error_type, st.error).to_json()
    keys = [k.wf(stage), k.wf_done(stage), k.wf_results(stage), target, k.job(nxt), k.done(nxt)]
    keys.append(k.waiting)
    args = [str(int(wf["i"])), value or "null", now, nxt]
    return STEP, keys, args, f"{k.name}/{stage}"


def report(conn: redis.Redis, steps: Sequence[Step]) -> None:
    """Tell the barriers (or chains' final jobs) about finished members. Idempotent:
    the worker calls it before acknowledging the members, and again after a crash."""
    now = repr(time.time())
    scripts = {STEP: conn.register_script(STEP), FAIL: conn.register_script(FAIL)}
    # One round trip on a single server; a cluster client routes each script by its keys.
    pipe = None if is_cluster(conn) else conn.pipeline(transaction=False)
    replies: list[Any] = []
    barriers: list[str] = []
    for st in steps:
        try:
            plan = _plan(st, now)
        except (KeyError, TypeError, ValueError) as exc:
            # Not written by gridq: the job itself still settles; say why it did not report.
            log.error("job with malformed workflow metadata %r: %s", st.wf, exc)
            continue
        if plan is None:
            continue
        script, keys, args, where = plan
        reply = scripts[script](keys=keys, args=args, client=pipe)
        barriers.append(where)
        if pipe is None:
            replies.append(reply)
    if pipe is not None:
        replies = pipe.execute()
    for where, reply in zip(barriers, replies, strict=True):
        if where and reply == -1:
            log.warning("workflow barrier %s is gone (expired?): a member's report was lost", where)


# --- creating workflows (the producer side, gridq/canvas.py) ------------------------------


_PLACEHOLDER = "\x00gridq-wf-value\x00"
_PH_JSON = json.dumps(_PLACEHOLDER).encode()


def split_envelope(envelope: bytes) -> tuple[bytes, bytes, bytes]:
    """(head, tail1, tail2) of an envelope whose first argument is the placeholder:
    the barrier builds head + value + tail1 + now + tail2 (a fresh ``enqueued_at``)."""
    head, sep, tail = envelope.partition(_PH_JSON)
    if not sep:
        raise ValueError("envelope has no value placeholder")
    # The last one: the envelope's own field comes after args/kwargs, which may hold
    # the same text (only gridq's fields follow it).
    mark = b'"enqueued_at":'
    before, sep, after = tail.rpartition(mark)
    end = 0
    while end < len(after) and after[end : end + 1] in b"0123456789.e+-":
        end += 1
    return head, before + sep, after[end:]


def placeholder() -> str:
    return _PLACEHOLDER


def barrier_fields(
    n: int, mode: str, ttl: int, parts: tuple[bytes, bytes, bytes] | None
) -> dict[str, Any]:
    f: dict[str, Any] = {"n": n, "mode": mode, "ttl": ttl}
    if parts is not None:
        f.update(head=parts[0], tail1=parts[1], tail2=parts[2])
    return f
