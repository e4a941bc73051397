"""A steady producer and a drain check shared by the failover tests."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import redis

from gridq import protocol
from gridq.queue import Queue
from gridq.redisurl import client


@dataclass
class Producer:
    """Enqueues ``jobs`` jobs in batches, retrying a batch until it is acknowledged."""

    url: str
    queue: str
    jobs: int
    batch: int = 20
    acked: list[int] = field(default_factory=list)
    errors: int = 0

    def start_until_a_third(self) -> threading.Thread:
        """Run in a thread; return once a third is acknowledged (the time to kill)."""
        t = threading.Thread(target=self.run, daemon=True)
        t.start()
        deadline = time.monotonic() + 60
        while len(self.acked) < self.jobs // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.acked) < self.jobs, "the producer finished before the kill"
        return t

    def run(self) -> None:
        q = Queue.from_url(self.url, self.queue, timeout=2)
        for start in range(0, self.jobs, self.batch):
            ids = list(range(start, min(start + self.batch, self.jobs)))
            items = [protocol.encode("echo", [i], {}, job_id=f"j{i}") for i in ids]
            while True:
                try:
                    q.push_items(items)
                    break
                except redis.RedisError:
                    self.errors += 1
                    time.sleep(0.05)
            self.acked.extend(ids)
            time.sleep(0.01)  # a steady stream, so the kill lands mid-run


def results(url: str, output: str) -> list[int]:
    try:
        raw = client(url, timeout=2).lrange(output, 0, -1)
    except redis.RedisError:
        return []
    return [int(json.loads(x)["result"]) for x in raw]


def drain(url: str, queue: str, output: str, timeout: float = 120.0) -> list[int]:
    """Wait until nothing waits or is in flight and no result came for 3 s."""
    deadline = time.monotonic() + timeout
    stable_since, last = time.monotonic(), -1
    while time.monotonic() < deadline:
        got = results(url, output)
        if len(got) != last:
            stable_since, last = time.monotonic(), len(got)
        try:
            st = Queue.from_url(url, queue, timeout=2).stats()
            idle = st["depth"] == 0 and st["in_flight"] == 0 and st["delayed"] == 0
        except redis.RedisError:
            idle = False
        if idle and time.monotonic() - stable_since > 3:
            break
        time.sleep(0.2)
    return results(url, output)
