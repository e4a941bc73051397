"""Move a Redis from key layout 1 (gridq 0.1.0) to layout 2 (0.2.0, cluster ready).

Layout 1 spelled a queue's keys ``gridq:q:NAME:...``, the lease
``gridq:consumer:ID:alive`` and hub state ``gridq:hub:...``; layout 2 puts hash tags
in them (gridq/keys.py, docs/protocol.md "Key layout versions"). Layout-1 names are
written out here, once, because nothing else may know them any more.

Run with the hub and the workers stopped. Idempotent: a key already moved is gone
from its old name, so a second run finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from gridq import keys, protocol
from gridq.redisurl import is_cluster

_OLD_QUEUE = f"{keys.PREFIX}:q:"
_OLD_HUB = f"{keys.PREFIX}:hub:"
_OLD_LEASE = f"{keys.PREFIX}:consumer:"
_SUFFIXES = {"delayed", "dead", "stats", "consumers", "last_claim", "paused"} | {
    f"p{i}" for i in range(1, protocol.MAX_PRIORITY + 1)
}


@dataclass
class Report:
    moved: list[tuple[str, str]] = field(default_factory=list)  # (old, new)
    dropped: list[str] = field(default_factory=list)  # layout-1 leases


def _text(k: Any) -> str:
    return k.decode() if isinstance(k, bytes) else str(k)


def _scan(conn: redis.Redis, pattern: str) -> Iterator[str]:
    for k in conn.scan_iter(match=pattern, count=1000):
        yield _text(k)


def old_queue_key(key: str) -> tuple[str, str] | None:
    """(queue, layout-2 name) for a layout-1 per-queue key, else None."""
    if not key.startswith(_OLD_QUEUE) or key.startswith(_OLD_QUEUE + "{"):
        return None
    rest = key[len(_OLD_QUEUE) :]
    if ":inflight:" in rest:
        name, _, consumer = rest.partition(":inflight:")
        return (name, keys.QueueKeys(name).inflight(consumer)) if name and consumer else None
    name, _, suffix = rest.rpartition(":")
    if not name or suffix not in _SUFFIXES or "{" in name or "}" in name:
        return None
    k = keys.QueueKeys(name)
    new = k.priority(int(suffix[1:])) if suffix[0] == "p" else getattr(k, suffix)
    return name, str(new)


def old_hub_key(key: str) -> str | None:
    """The layout-2 name of a layout-1 hub key, else None."""
    if not key.startswith(_OLD_HUB):
        return None
    return f"{keys.HUB}:{key[len(_OLD_HUB) :]}"


def plan(conn: redis.Redis, queues: Iterable[str] = ()) -> tuple[list[tuple[str, str]], list[str]]:
    """The moves (old, new) and the leases to drop; only ``queues`` if given (and then no
    hub state), else everything found."""
    only = set(queues)
    moves: list[tuple[str, str]] = []
    for key in _scan(conn, f"{_OLD_QUEUE}*"):
        found = old_queue_key(key)
        if found and (not only or found[0] in only):
            moves.append((key, found[1]))
    if not only:
        for key in _scan(conn, f"{_OLD_HUB}*"):
            new = old_hub_key(key)
            if new:
                moves.append((key, new))
    leases = [k for k in _scan(conn, f"{_OLD_LEASE}*:alive")]
    return sorted(moves), sorted(leases)


def _merge(conn: redis.Redis, old: str, new: str) -> None:
    """Both names exist (a 0.2.0 part already wrote the new one): combine them."""
    kind = _text(conn.type(old))
    if kind == "list":
        # Old items go to the right end: the end workers take from (they are older).
        items = conn.lrange(old, 0, -1)
        if items:
            conn.rpush(new, *items)
    elif kind == "hash":
        for f, v in conn.hgetall(old).items():
            try:
                conn.hincrby(new, f, int(v))
            except ValueError:
                conn.hsetnx(new, f, v)
    elif kind == "zset":
        conn.zadd(new, dict(conn.zrange(old, 0, -1, withscores=True)), nx=True)
    elif kind == "set":
        conn.sadd(new, *conn.smembers(old))
    # a string: the new value is the current one
    conn.delete(old)


def _move(conn: redis.Redis, old: str, new: str) -> None:
    if conn.exists(new):
        _merge(conn, old, new)
    elif not is_cluster(conn):
        conn.rename(old, new)  # atomic on one server
    else:
        # Old and new name may be in different slots: copy, then delete.
        ttl = int(conn.pttl(old))
        dump = conn.dump(old)
        if dump is not None:
            conn.restore(new, max(ttl, 0), dump)
        conn.delete(old)


def migrate(conn: redis.Redis, queues: Iterable[str] = (), *, dry_run: bool = False) -> Report:
    for q in queues:
        keys.check_queue_name(q)
    moves, leases = plan(conn, queues)
    rep = Report(moved=moves, dropped=leases)
    if dry_run:
        return rep
    for old, new in moves:
        _move(conn, old, new)
    for lease in leases:
        # Meaningless to a 0.2.0 worker; without it the reaper requeues the in-flight
        # jobs of its (stopped) consumer.
        conn.delete(lease)
    return rep
