"""The Redis side of a consumer: claim, settle (ack / retry / dead), requeue, reap.

Every step that touches more than one key is one Lua script, so a crash between two
commands can never lose a job or leave it in two places. A job is never popped: it is
*moved* from the queue into this consumer's in-flight list (the claim), and leaves
that list only in the same atomic step that records its outcome or puts it back.

Scripts take the queue's eleven "routing" keys first (the queue list and the nine
priority lists) so that Lua can send an item back to the list it belongs to without
building key names itself (every key is named in gridq/keys.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gridq import durability, keys, protocol
from gridq.redisurl import client, is_cluster, key_slot

# Lua helper: the list an item belongs to. Envelopes carrying a priority go to their
# priority list; everything else to the queue list. KEYS[1] = queue, KEYS[1+p] = p{p}.
_TARGET = """
local function target(item)
  if string.sub(item, 1, 1) == '{' then
    local ok, body = pcall(cjson.decode, item)
    if ok and type(body) == 'table' and body['gridq'] then
      local p = tonumber(body['priority'])
      if p and p >= 1 and p <= 9 then return KEYS[1 + math.floor(p)] end
    end
  end
  return KEYS[1]
end
"""

# KEYS: queue, p1..p9, paused, last_claim, inflight. ARGV: max items, now.
# Takes from p9 down to p1, then the queue; from the right end (oldest first).
# Returns -1 while the queue is paused, else the claimed items, oldest first.
CLAIM = """
if redis.call('EXISTS', KEYS[11]) == 1 then return -1 end
local n = tonumber(ARGV[1])
local out = {}
for i = 10, 1, -1 do
  if n <= 0 then break end
  local got = redis.call('RPOP', KEYS[i], n)
  if got then
    redis.call('LPUSH', KEYS[13], unpack(got))
    for _, item in ipairs(got) do out[#out + 1] = item end
    n = n - #got
  end
end
if #out > 0 then redis.call('SET', KEYS[12], ARGV[2]) end
return out
"""

# KEYS: queue, p1..p9, inflight, stats, delayed, dead, output (output may be a dummy).
# ARGV: now, n_ack, n_result, n_retry, n_dead, n_failed, then
#   n_ack acked items, n_result results, n_retry (old, new, due) triples,
#   n_dead (old, record) pairs.
# Returns how many items were no longer in the in-flight list (reclaimed meanwhile).
SETTLE = (
    _TARGET
    + """
local now = tonumber(ARGV[1])
local n_ack, n_res, n_retry, n_dead, n_failed =
  tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local inflight, stats, delayed, dead, output = KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15]
local missing = 0
local i = 7
for _ = 1, n_ack do
  if redis.call('LREM', inflight, -1, ARGV[i]) == 0 then missing = missing + 1 end
  i = i + 1
end
if n_res > 0 then
  redis.call('LPUSH', output, unpack(ARGV, i, i + n_res - 1))
  i = i + n_res
end
for _ = 1, n_retry do
  if redis.call('LREM', inflight, -1, ARGV[i]) == 0 then missing = missing + 1 end
  local due = tonumber(ARGV[i + 2])
  if due <= now then
    redis.call('LPUSH', target(ARGV[i + 1]), ARGV[i + 1])
  else
    redis.call('ZADD', delayed, due, ARGV[i + 1])
  end
  i = i + 3
end
for _ = 1, n_dead do
  if redis.call('LREM', inflight, -1, ARGV[i]) == 0 then missing = missing + 1 end
  redis.call('LPUSH', dead, ARGV[i + 1])
  i = i + 2
end
if n_ack > 0 then redis.call('HINCRBY', stats, 'processed', n_ack) end
if n_retry > 0 then redis.call('HINCRBY', stats, 'retried', n_retry) end
if n_dead > 0 then redis.call('HINCRBY', stats, 'dead', n_dead) end
if n_failed > 0 then redis.call('HINCRBY', stats, 'failed', n_failed) end
return missing
"""
)

# KEYS: queue, p1..p9, inflight. ARGV: items in the order they should run next.
# Puts them back at the RIGHT end (the head: they run before anything else waiting).
REQUEUE = (
    _TARGET
    + """
local n = 0
for i = #ARGV, 1, -1 do
  if redis.call('LREM', KEYS[11], -1, ARGV[i]) > 0 then
    redis.call('RPUSH', target(ARGV[i]), ARGV[i])
    n = n + 1
  end
end
return n
"""
)

# KEYS: queue, p1..p9, consumers, alive key, inflight of the dead consumer. ARGV: its id.
# Checks the lease inside the script: a consumer that renewed meanwhile keeps its jobs.
REAP = (
    _TARGET
    + """
if redis.call('EXISTS', KEYS[12]) == 1 then return -1 end
local n = 0
while true do
  local item = redis.call('LPOP', KEYS[13])
  if not item then break end
  redis.call('RPUSH', target(item), item)
  n = n + 1
end
redis.call('ZREM', KEYS[11], ARGV[1])
return n
"""
)

# KEYS: queue, p1..p9, delayed. ARGV: now, limit. Moves due jobs to the back of their list.
PROMOTE = (
    _TARGET
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, item in ipairs(due) do
  if redis.call('ZREM', KEYS[11], item) == 1 then
    redis.call('LPUSH', target(item), item)
  end
end
return #due
"""
)

# KEYS: consumers, alive key, inflight. ARGV: consumer id.
# Leaves the consumers set only with an empty in-flight list: otherwise the entry
# stays, the lease lapses, and a reaper requeues what is left.
LEAVE = """
redis.call('DEL', KEYS[2])
if redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

MAX_BATCH = 500  # Lua's unpack() and reply sizes stay small


@dataclass(slots=True)
class Settlement:
    """Outcomes collected for one atomic SETTLE call."""

    acks: list[bytes] = field(default_factory=list)
    results: list[bytes] = field(default_factory=list)
    retries: list[tuple[bytes, bytes, float]] = field(default_factory=list)
    deads: list[tuple[bytes, bytes]] = field(default_factory=list)
    failed: int = 0

    def __len__(self) -> int:
        return len(self.acks) + len(self.retries) + len(self.deads)


def make_client(url: str) -> redis.Redis:
    # No silent retries inside redis-py: a retried script whose reply was lost could
    # claim twice. The worker's own loops retry, and reconcile after an outage.
    return client(
        url,
        timeout=10,
        retry=Retry(NoBackoff(), 0),
        socket_keepalive=True,
        health_check_interval=0,
    )


class Broker:
    """One consumer's view of one queue."""

    def __init__(
        self,
        conn: redis.Redis,
        queue: str,
        consumer_id: str,
        *,
        out_conn: redis.Redis | None = None,
        output_queue: str | None = None,
        lease: float = 30.0,
        min_replicas: int = 0,
        out_min_replicas: int | None = None,
    ) -> None:
        self.conn = conn
        # Replicas each settle batch waits for (one WAIT per batch; gridq/durability.py).
        self.min_replicas = min_replicas
        self.out_min_replicas = min_replicas if out_min_replicas is None else out_min_replicas
        self.out_conn = out_conn if out_conn is not None else conn
        self.output_queue = output_queue or None
        self.k = keys.QueueKeys(queue)
        # The result goes inside the settle script only if that script may touch it:
        # same Redis, and the output list in the queue's hash slot (always true of a
        # single server, where slots do not matter). Otherwise it is its own step.
        self.separate_output = (out_conn is not None and out_conn is not conn) or (
            self.output_queue is not None
            and is_cluster(conn)
            and key_slot(self.output_queue) != key_slot(self.k.pending)
        )
        self.consumer_id = consumer_id
        self.inflight = self.k.inflight(consumer_id)
        self.alive = self.k.alive(consumer_id)
        self.lease = lease
        self._route = [self.k.pending] + [
            self.k.priority(p) for p in range(1, protocol.MAX_PRIORITY + 1)
        ]
        self._claim = conn.register_script(CLAIM)
        self._settle = conn.register_script(SETTLE)
        self._requeue = conn.register_script(REQUEUE)
        self._reap = conn.register_script(REAP)
        self._promote = conn.register_script(PROMOTE)
        self._leave = conn.register_script(LEAVE)

    # --- taking jobs ------------------------------------------------------------------

    def claim(self, n: int) -> list[bytes] | None:
        """Up to ``n`` items, highest priority first; None while the queue is paused."""
        res = self._claim(
            keys=[*self._route, self.k.paused, self.k.last_claim, self.inflight],
            args=[min(n, MAX_BATCH), repr(time.time())],
        )
        if isinstance(res, int):
            return None
        return list(res)

    def wait_claim(self, timeout: float) -> bytes | None:
        """Block until one item arrives in the queue list and move it in flight."""
        return self.conn.blmove(  # type: ignore[no-any-return]
            self.k.pending, self.inflight, timeout, "RIGHT", "LEFT"
        )

    def touch_last_claim(self) -> None:
        self.conn.set(self.k.last_claim, repr(time.time()))

    # --- outcomes ---------------------------------------------------------------------

    def settle(self, s: Settlement, *, retry: bool = False) -> int:
        """Record a batch of outcomes atomically; returns how many were already reclaimed.

        ``retry``: an earlier call for this batch failed. With WAIT on, the failure may
        have come after the script ran (too few replicas acknowledged): if none of the
        batch is in flight any more the settle is there, so only the WAIT is redone
        (behind a no-op write), rather than pushing the results a second time. If
        the master failed over and lost the settle, the items are in flight again on
        the new master and the settle runs again."""
        if retry and self.min_replicas and self._settled_already(s):
            durability.replicated(
                self.conn,
                self.k.stats,
                self.min_replicas,
                lambda c: c.hincrby(self.k.stats, "processed", 0),
            )
            return 0
        results = s.results if self.output_queue else []
        if results and self.separate_output:
            # Another Redis or slot: results first, then the ack. A crash between the
            # two runs the job again (at-least-once) rather than losing its result.
            assert self.output_queue
            out = self.output_queue
            try:
                durability.replicated(
                    self.out_conn, out, self.out_min_replicas, lambda c: c.lpush(out, *results)
                )
            except redis.RedisError as exc:
                exc.gridq_output = True  # type: ignore[attr-defined]  # tells which URL failed
                raise
            results = []
        args: list[bytes | str | float | int] = [
            repr(time.time()),
            len(s.acks),
            len(results),
            len(s.retries),
            len(s.deads),
            s.failed,
        ]
        args.extend(s.acks)
        args.extend(results)
        for old, new, due in s.retries:
            args.extend((old, new, repr(due)))
        for old, rec in s.deads:
            args.extend((old, rec))
        # A dummy in the queue's slot when the results are not written here.
        out_key = (
            self.k.pending if self.separate_output or not self.output_queue else self.output_queue
        )
        settle_keys = [
            *self._route,
            self.inflight,
            self.k.stats,
            self.k.delayed,
            self.k.dead,
            out_key,
        ]
        missing = durability.replicated(
            self.conn,
            self.inflight,
            self.min_replicas,
            lambda c: self._settle(keys=settle_keys, args=args, client=c),
        )
        return int(missing)

    def _settled_already(self, s: Settlement) -> bool:
        """Whether none of the batch's items is in this consumer's in-flight list."""
        olds = [*s.acks, *(o for o, _, _ in s.retries), *(o for o, _ in s.deads)]
        pipe = durability.owner(self.conn, self.inflight).pipeline(transaction=False)
        for item in olds:
            pipe.lpos(self.inflight, item)
        return all(pos is None for pos in pipe.execute())

    def requeue(self, items: Sequence[bytes]) -> int:
        """Put claimed items back at the head of their lists, first given runs first."""
        total = 0
        for i in range(0, len(items), MAX_BATCH):
            total += int(
                self._requeue(
                    keys=[*self._route, self.inflight], args=list(items[i : i + MAX_BATCH])
                )
            )
        return total

    def inflight_items(self) -> list[bytes]:
        return list(self.conn.lrange(self.inflight, 0, -1))

    # --- liveness ---------------------------------------------------------------------

    def heartbeat(self) -> bool:
        """Renew the lease; returns False if it had expired (jobs may have been reclaimed)."""
        pipe = self.conn.pipeline(transaction=True)
        pipe.set(self.alive, "1", ex=max(1, int(round(self.lease))), get=True)
        pipe.zadd(self.k.consumers, {self.consumer_id: time.time()})
        prev, _ = pipe.execute()
        return prev is not None

    def leave(self) -> bool:
        """Drop the lease; leave the consumers set if nothing is left in flight."""
        return bool(
            self._leave(keys=[self.k.consumers, self.alive, self.inflight], args=[self.consumer_id])
        )

    def reap(self) -> int:
        """Requeue the jobs of consumers of this queue whose lease is gone."""
        others = [
            c.decode() if isinstance(c, bytes) else str(c)
            for c in self.conn.zrange(self.k.consumers, 0, -1)
        ]
        others = [c for c in others if c != self.consumer_id]
        if not others:
            return 0
        pipe = self.conn.pipeline(transaction=False)
        for c in others:
            pipe.exists(self.k.alive(c))
        alive = pipe.execute()
        moved = 0
        for c, is_alive in zip(others, alive, strict=True):
            if is_alive:
                continue
            n = int(
                self._reap(
                    keys=[
                        *self._route,
                        self.k.consumers,
                        self.k.alive(c),
                        self.k.inflight(c),
                    ],
                    args=[c],
                )
            )
            moved += max(n, 0)
        return moved

    def promote(self, limit: int = 200) -> int:
        """Move delayed jobs that are due back to their queue."""
        return int(self._promote(keys=[*self._route, self.k.delayed], args=[time.time(), limit]))
