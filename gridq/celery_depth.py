"""Depth of a Celery queue on a Redis broker, read straight from kombu's keys.

This module imports neither Celery nor kombu nor the rest of gridq, so the hub can
show Celery queue depth without installing Celery. The key layout mirrors kombu's
Redis transport (``kombu/transport/redis.py``, kombu 5.x):

- a queue ``q`` at priority step 0 is the LIST ``q``; at any other step ``p`` it is
  the LIST ``q + "\\x06\\x16" + str(p)`` (``Channel.sep`` and ``Channel._q_for_pri``);
  the default steps are ``[0, 3, 6, 9]``, many apps set ``list(range(10))``;
- messages delivered to a worker but not yet acknowledged sit in the HASH
  ``unacked`` (delivery tag -> JSON ``[message, exchange, routing_key]``) until the
  ack, or until ``visibility_timeout`` puts them back in the queue;
- ``global_keyprefix`` (a transport option) is prepended to every one of those keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypedDict, Unpack

KOMBU_SEP = "\x06\x16"
KOMBU_UNACKED_KEY = "unacked"
# Counting every step 0..9 costs nine LLENs of keys that usually do not exist, and it
# is right whatever priority_steps the app configured (kombu's default [0, 3, 6, 9]
# and the common list(range(10)) are both subsets).
ALL_PRIORITY_STEPS: tuple[int, ...] = tuple(range(10))


class DepthOptions(TypedDict, total=False):
    """The keyword options of ``celery_queue_depth``, as ``celery_queue_depth_detail`` takes them."""

    priority_steps: Iterable[int]
    sep: str
    global_keyprefix: str
    unacked_key: str
    include_unacked: bool


class CeleryDepth(TypedDict):
    waiting: int  # messages in the queue's lists, all priorities
    unacked: int  # delivered to a worker, not yet acknowledged (running or prefetched)
    by_priority: dict[int, int]  # priority step -> messages waiting at that step
    total: int  # waiting + unacked


def priority_key(queue: str, step: int, *, sep: str = KOMBU_SEP, prefix: str = "") -> str:
    """The Redis LIST kombu uses for ``queue`` at priority step ``step``."""
    return f"{prefix}{queue}{sep}{step}" if step else f"{prefix}{queue}"


def celery_queue_depth_detail(
    redis_conn: Any,
    queue: str,
    *,
    priority_steps: Iterable[int] = ALL_PRIORITY_STEPS,
    sep: str = KOMBU_SEP,
    global_keyprefix: str = "",
    unacked_key: str = KOMBU_UNACKED_KEY,
    include_unacked: bool = True,
) -> CeleryDepth:
    """Waiting messages per priority step and unacknowledged messages of one queue.

    ``redis_conn`` is a redis-py client on the broker's database. One pipelined round
    trip for the lists; the unacked hash is scanned (it holds at most what the workers
    prefetched, so it stays small) and its entries are attributed by routing key,
    which is the queue name for Celery's default routing.
    """
    steps = sorted({int(s) for s in priority_steps} | {0})
    pipe = redis_conn.pipeline(transaction=False)
    for step in steps:
        pipe.llen(priority_key(queue, step, sep=sep, prefix=global_keyprefix))
    sizes = [int(n or 0) for n in pipe.execute()]
    by_priority = {s: n for s, n in zip(steps, sizes, strict=True) if n}
    waiting = sum(sizes)
    unacked = (
        _count_unacked(redis_conn, global_keyprefix + unacked_key, queue) if include_unacked else 0
    )
    return {
        "waiting": waiting,
        "unacked": unacked,
        "by_priority": by_priority,
        "total": waiting + unacked,
    }


def celery_queue_depth(redis_conn: Any, queue: str, **options: Unpack[DepthOptions]) -> int:
    """Messages of a Celery queue not yet done: waiting at every priority + unacked.

    Takes the keyword options of ``celery_queue_depth_detail``.
    """
    return celery_queue_depth_detail(redis_conn, queue, **options)["total"]


def _count_unacked(redis_conn: Any, key: str, queue: str) -> int:
    count = 0
    for _tag, raw in redis_conn.hscan_iter(key, count=500):
        try:
            _msg, exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        # Celery publishes to the queue's own exchange with routing key = queue name;
        # a message sent to the default exchange ("") is routed by its key alone.
        if routing_key == queue or (not routing_key and exchange == queue):
            count += 1
    return count
