#!/usr/bin/env python3
"""An IDM-GridCore-style consumer: knows only the environment the node injects.

    TASK_NAME, NODE_ID, INSTANCE_ID, INPUT_REDIS_URL, OUTPUT_REDIS_URL,
    INPUT_QUEUE, OUTPUT_QUEUE

It needs no gridq import, which is how containers written for IDM-GridCore run on
gridq unchanged. Unlike the classic ``BRPOP`` loop, which loses a job when the container
dies between the pop and the push, it moves each job atomically into a per-instance
processing list with ``BLMOVE`` (Redis >= 6.2), pushes the result, and only then removes
the job from that list (the ack). Jobs left in the processing list by a killed instance
are put back at start-up by the next instance with the same INSTANCE_ID, and can be
recovered by an operator from ``<INPUT_QUEUE>:processing:*``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import redis

log = logging.getLogger("gridcore-consumer")
stop = threading.Event()


def handle(item: bytes) -> bytes:
    """The job. Replace with your own; here: the square of an integer, as ``n:n*n``."""
    n = int(item)
    return f"{n}:{n * n}".encode()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    in_url = os.environ["INPUT_REDIS_URL"]
    out_url = os.environ.get("OUTPUT_REDIS_URL") or in_url
    in_q = os.environ["INPUT_QUEUE"]
    out_q = os.environ.get("OUTPUT_QUEUE", "")
    instance = os.environ.get("INSTANCE_ID") or os.environ.get("HOSTNAME", "consumer")
    processing = f"{in_q}:processing:{instance}"

    src = redis.Redis.from_url(in_url)
    dst = src if out_url == in_url else redis.Redis.from_url(out_url)

    # SIGTERM (docker stop, the node scaling down): finish the current job, then exit.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    # Put back what a previous life of this instance had taken but not acknowledged.
    while src.lmove(processing, in_q, "RIGHT", "RIGHT") is not None:
        pass

    # Never log the URL itself: it carries the password.
    log.info(
        "task=%s instance=%s consuming %s -> %s",
        os.environ.get("TASK_NAME"),
        instance,
        in_q,
        out_q or "(discard)",
    )
    done = 0
    while not stop.is_set():
        # A short timeout keeps the loop responsive to SIGTERM.
        item = src.blmove(in_q, processing, 1, "RIGHT", "LEFT")
        if item is None:
            continue
        try:
            result = handle(item)
        except Exception:
            log.exception("job failed; moving it to %s:failed", in_q)
            pipe = src.pipeline()
            pipe.lpush(f"{in_q}:failed", item)
            pipe.lrem(processing, 1, item)
            pipe.execute()
            continue
        if out_q:
            dst.lpush(out_q, result)
        src.lrem(processing, 1, item)  # the ack: only now is the job gone from Redis
        done += 1
    log.info("stopping after %d jobs", done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
