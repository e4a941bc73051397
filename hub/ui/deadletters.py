"""The dead-letter browser: pages, a filter by error type, requeue and purge.

Dead letters live in the task's own Redis, newest at the head of one LIST
(``gridq:q:{queue}:dead``). A page is one LRANGE window, never the whole list. A filter
by error type scans a bounded window (SCAN_WINDOW records) from an offset and says
where it stopped, so the next page ("load more") continues from there: 200,000 dead
letters cost a page as much as 2,000 do. No index is kept: the workers write the list
and an index beside it would have to be maintained in their Lua settle script.

Requeue all and purge use the same code as ``gridq dlq retry`` / ``purge``
(gridq.queue.Queue). Requeuing one record removes exactly that record (LREM by value)
and pushes its item back in one Lua script: never in both lists, never in neither.
All functions are sync (the task's Redis client is); call them from a thread.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from gridq.queue import Queue

SCAN_WINDOW = 2000  # records looked at per filtered page
CHUNK = 500  # records per LRANGE while scanning
FACET_WINDOW = 1000  # newest records whose error types fill the filter's choices
REQUEUE_CHUNK = 1000

# KEYS: dead list, pending list. ARGV: the exact record, the item to push.
_REQUEUE_RECORD = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


@dataclass
class Page:
    items: list[dict[str, Any]]
    total: int
    offset: int
    next_offset: int | None  # where the next page starts; None at the end
    scanned_to: int  # records looked at up to here (filtered pages)
    error_types: list[str] = field(default_factory=list)


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:20]


def _text(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode()


def _parse(raw: bytes, index: int) -> dict[str, Any]:
    try:
        rec = json.loads(raw)
        if not isinstance(rec, dict):
            raise ValueError
    except ValueError:
        rec = {"error_type": "unreadable", "error": "unreadable dead-letter record"}
    item = rec.get("item")
    preview = item if isinstance(item, str) else ("<binary>" if "item_b64" in rec else "")
    return {
        "index": index,
        "digest": digest(raw),
        "id": rec.get("id"),
        "task": rec.get("task"),
        "reason": rec.get("reason"),
        "error_type": str(rec.get("error_type") or ""),
        "error": str(rec.get("error") or ""),
        "traceback": rec.get("traceback"),
        "attempts": rec.get("attempts"),
        "failed_at": rec.get("failed_at"),
        "item": preview[:200],
    }


def _matches(raw: bytes, error_type: str) -> bool:
    # Records are compact JSON (gridq.protocol.dead_record): a substring test skips most
    # non-matching records without parsing them; the parse confirms.
    if json.dumps(error_type).encode() not in raw:
        return False
    try:
        return str(json.loads(raw).get("error_type") or "") == error_type
    except (ValueError, AttributeError):
        return False


_ERROR_TYPE = re.compile(rb'"error_type":("(?:[^"\\]|\\.)*")')


def error_types(q: Queue) -> list[str]:
    """Distinct error types among the newest FACET_WINDOW records (the filter's choices);
    read with a regular expression, not a JSON parse of every record."""
    seen: set[str] = set()
    for raw in q.conn.lrange(q.keys.dead, 0, FACET_WINDOW - 1):
        m = _ERROR_TYPE.search(_text(raw))
        if m:
            try:
                seen.add(str(json.loads(m.group(1))))
            except ValueError:
                continue
    return sorted(t for t in seen if t)


def page(q: Queue, offset: int = 0, limit: int = 20, error_type: str | None = None) -> Page:
    total = int(q.conn.llen(q.keys.dead))
    offset = max(0, offset)
    if not error_type:
        raws = q.conn.lrange(q.keys.dead, offset, offset + limit - 1)
        items = [_parse(_text(r), offset + i) for i, r in enumerate(raws)]
        end = offset + len(raws)
        return Page(items, total, offset, end if end < total else None, end)
    items = []
    pos = offset
    stop = min(total, offset + SCAN_WINDOW)
    while pos < stop and len(items) < limit:
        raws = q.conn.lrange(q.keys.dead, pos, min(stop, pos + CHUNK) - 1)
        if not raws:
            break
        for i, r in enumerate(raws):
            raw = _text(r)
            if _matches(raw, error_type):
                items.append(_parse(raw, pos + i))
                if len(items) >= limit:
                    pos = pos + i + 1
                    break
        else:
            pos += len(raws)
    return Page(items, total, offset, pos if pos < total else None, pos)


def _item(raw: bytes) -> bytes:
    """The original job item of a dead record (the record itself if unreadable)."""
    try:
        rec = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(rec, dict):
        if isinstance(rec.get("item_b64"), str):
            return base64.b64decode(rec["item_b64"])
        if isinstance(rec.get("item"), str):
            return str(rec["item"]).encode()
    return raw


def _requeue_raws(q: Queue, raws: list[bytes]) -> int:
    script = q.conn.register_script(_REQUEUE_RECORD)
    pipe = q.conn.pipeline(transaction=False)
    for raw in raws:
        script(keys=[q.keys.dead, q.keys.pending], args=[raw, _item(raw)], client=pipe)
    return sum(int(x) for x in pipe.execute())


def requeue_one(q: Queue, index: int, want: str) -> bool:
    """Requeue the record shown at ``index`` with digest ``want``. New dead letters
    push older ones further down, so look a little past the index if it moved."""
    raws = q.conn.lrange(q.keys.dead, max(0, index), max(0, index) + CHUNK - 1)
    for r in raws:
        raw = _text(r)
        if digest(raw) == want:
            return _requeue_raws(q, [raw]) == 1
    return False


def requeue_all(q: Queue) -> int:
    return q.retry_dead()


def requeue_filtered(q: Queue, error_type: str) -> int:
    """Requeue every record of ``error_type``: the whole list, scanned in chunks from the
    tail (the oldest), so records the scan already passed never come round again."""
    moved = 0
    total = int(q.conn.llen(q.keys.dead))
    end = total
    while end > 0:
        start = max(0, end - REQUEUE_CHUNK)
        raws = [_text(r) for r in q.conn.lrange(q.keys.dead, start, end - 1)]
        hits = [r for r in raws if _matches(r, error_type)]
        if hits:
            moved += _requeue_raws(q, hits)
        end = start
    return moved


def purge(q: Queue) -> int:
    return q.purge_dead()


def find_job(q: Queue, job_id: str, window: int = SCAN_WINDOW) -> dict[str, Any] | None:
    """A job's dead-letter record by id among the newest ``window`` records, or None.
    gridq keeps no per-job records besides dead letters (yet)."""
    needle = json.dumps(job_id).encode()
    for pos in range(0, window, CHUNK):
        raws = q.conn.lrange(q.keys.dead, pos, pos + CHUNK - 1)
        for i, r in enumerate(raws):
            raw = _text(r)
            if needle in raw:
                rec = _parse(raw, pos + i)
                if rec["id"] == job_id:
                    return rec
        if len(raws) < CHUNK:
            break
    return None
