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

import re
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

# Lua helper: the id of a job that keeps a record (gridq/jobs.py), else nil. Such
# envelopes start with {"gridq":1,"id":"<id>","ttl": (protocol.encode writes them so).
_REC = """
local function rec_id(item)
  return string.match(item, '^{"gridq":1,"id":"([^"]+)","ttl":')
end
"""
REC_PREFIX = re.compile(rb'^\{"gridq":1,"id":"([^"]+)","ttl":')

# Lua helpers for grid-wide limits (docs/worker.md "Grid-wide limits"). The worker
# passes its app's limited tasks: per task two keys (rate HASH, slots ZSET) from KEYS
# index ``lb`` on, and (name, interval seconds or 0, concurrency or 0) from ARGV
# index ``ab`` + 1 on (ARGV[ab] = how many tasks).
_LIMITS = """
local function load_limits(lb, ab)
  local lim = {}
  local n = tonumber(ARGV[ab])
  for j = 0, n - 1 do
    lim[ARGV[ab + 1 + 3 * j]] = {rk = lb + 2 * j, ck = lb + 2 * j + 1,
      iv = tonumber(ARGV[ab + 2 + 3 * j]), cc = tonumber(ARGV[ab + 3 + 3 * j])}
  end
  return lim, n
end
-- 0 when the job may start now (its rate slot and concurrency slot are taken), else
-- the unix time to park it until. Checks first, writes after: a parked job takes nothing.
local function limit_check(lim, item, now, lease)
  local task = string.match(item, '"task":"([^"]*)"')
  local l = task and lim[task]
  if not l then return 0 end
  if l.cc > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[l.ck], '-inf', now)
    if redis.call('ZCARD', KEYS[l.ck]) >= l.cc then return now + 0.1 end
  end
  if l.iv > 0 then
    local st = redis.call('HMGET', KEYS[l.rk], 'tat', 'horizon')
    local tat = tonumber(st[1]) or 0
    if tat > now then
      local due = math.max(tonumber(st[2]) or 0, tat)
      redis.call('HSET', KEYS[l.rk], 'horizon', due + l.iv)
      redis.call('EXPIRE', KEYS[l.rk], math.ceil(due - now + l.iv) + 60)
      return due
    end
    redis.call('HSET', KEYS[l.rk], 'tat', now + l.iv)
    redis.call('EXPIRE', KEYS[l.rk], math.ceil(l.iv) + 60)
  end
  if l.cc > 0 then
    local jid = string.match(item, '"id":"([^"]*)"') or item
    redis.call('ZADD', KEYS[l.ck], now + lease, jid)
  end
  return 0
end
"""

# KEYS: queue, p1..p9, paused, last_claim, inflight, running, cancelled, stats, kill,
#   delayed, then two per limited task (see _LIMITS).
# ARGV: max items, now, consumer id, lease, n limited tasks, (task, interval, conc)...
# Takes from p9 down to p1, then the queue; from the right end (oldest first). A job
# whose id is in the cancelled set is dropped here, never handed out (its record says
# cancelled already). A job over its task's limit is parked in the delayed ZSET until
# its next slot (not run, no try spent): other tasks' jobs behind it are not held up.
# Returns -1 while the queue is paused, else {claimed items (oldest first), dropped
# cancelled items}.
CLAIM = (
    _REC
    + _LIMITS
    + """
if redis.call('EXISTS', KEYS[11]) == 1 then return -1 end
local n = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local lim, nlim = load_limits(19, 5)
local out = {}
local dropped = {}
local marks = {}  -- id, stamp, ...: one HSET of the running hash for the whole batch
local stamp = ARGV[2] .. ' ' .. ARGV[3]
-- Almost always empty: one SCARD spares a SREM per job.
local any_cancelled = redis.call('SCARD', KEYS[15]) > 0
for i = 10, 1, -1 do
  if n <= 0 then break end
  local got = redis.call('RPOP', KEYS[i], n)
  if got then
    for _, item in ipairs(got) do
      local id = rec_id(item)
      local park = 0
      if id and any_cancelled and redis.call('SREM', KEYS[15], id) == 1 then
        redis.call('SREM', KEYS[17], id)
        dropped[#dropped + 1] = item
      else
        if nlim > 0 and string.sub(item, 1, 1) == '{' then
          park = limit_check(lim, item, now, tonumber(ARGV[4]))
        end
        if park > 0 then
          redis.call('ZADD', KEYS[18], park, item)
        else
          out[#out + 1] = item
          if id then
            marks[#marks + 1] = id
            marks[#marks + 1] = stamp
          end
        end
      end
    end
    n = n - #got
  end
end
if #out > 0 then
  redis.call('LPUSH', KEYS[13], unpack(out))
  redis.call('SET', KEYS[12], ARGV[2])
end
if #marks > 0 then redis.call('HSET', KEYS[14], unpack(marks)) end
if #dropped > 0 then redis.call('HINCRBY', KEYS[16], 'cancelled', #dropped) end
return {out, dropped}
"""
)

# KEYS: inflight, running, cancelled, stats, last_claim, kill, delayed, then two per
# limited task. ARGV: item, id ('' if it keeps no record), now, consumer, lease,
# n limited tasks, (task, interval, conc)...
# The claim's bookkeeping for one item a blocking BLMOVE moved in flight: drops it if
# it was cancelled (returns 0), parks it if over a limit (returns 2), else marks it
# running (returns 1).
ADOPT = (
    _LIMITS
    + """
local id = ARGV[2]
if id ~= '' and redis.call('SREM', KEYS[3], id) == 1 then
  redis.call('LREM', KEYS[1], -1, ARGV[1])
  redis.call('SREM', KEYS[6], id)
  redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
  return 0
end
local lim, nlim = load_limits(8, 6)
if nlim > 0 and string.sub(ARGV[1], 1, 1) == '{' then
  local park = limit_check(lim, ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[5]))
  if park > 0 then
    redis.call('LREM', KEYS[1], -1, ARGV[1])
    redis.call('ZADD', KEYS[7], park, ARGV[1])
    return 2
  end
end
if id ~= '' then redis.call('HSET', KEYS[2], id, ARGV[3] .. ' ' .. ARGV[4]) end
redis.call('SET', KEYS[5], ARGV[3])
return 1
"""
)

# KEYS: queue, p1..p9, inflight, stats, delayed, dead, output (output may be a dummy),
#   running, cancelled, kill, waiting, then per job record: record, done and, for a
#   unique job only, its unique key; then one slots ZSET per concurrency slot to free.
# ARGV: now, n_ack, n_result, n_retry, n_dead, n_failed, n_runs, n_slot, consumer, node,
#   where a job id starts in its record key (1 + the length of the key prefix),
#   then n_ack acked items, n_result results, n_retry (old, new, due) triples,
#   n_dead (old, record) pairs, n_runs runs of records, n_slot job ids (their
#   concurrency slots are freed). A run is records that share everything but their job:
#   (count, status, ttl, unique_for ('' = not unique: no unique key given), attempts,
#   finished_at ('' while retrying), err ('' or the JSON array [error_type, error,
#   traceback]), with_result ('1' or '')), then per record its started_at and, in a run
#   with results, the result (JSON). The job id is read off the record key. A batch of
#   successes that return nothing is one run: one value a job, not nine.
# A cancelled job's record (its id still in the cancelled set) keeps that status; an
# expired record is never recreated (EXPIRE answers 0). A finished job's record gets
# its TTL; if a JobHandle.get() waits for it (the waiting ZSET), the done list is set
# to one item, "status\nattempts\nresult\nerr" (same TTL), which wakes it.
# Per job that is one EXPIRE and one HSET: the cancelled and waiting sets are looked
# at once per batch (both are nearly always empty), and every value the HSET writes
# is short, so the record stays a listpack (a field over 64 bytes would turn it into
# a hashtable: twice the time, 2.5 times the memory).
# Returns how many items were no longer in the in-flight list (reclaimed meanwhile).
SETTLE = (
    _TARGET
    + """
local now = tonumber(ARGV[1])
local n_ack, n_res, n_retry, n_dead, n_failed, n_runs = tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local inflight, stats, delayed, dead, output = KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15]
local running, cancelled, kill, waiting = KEYS[16], KEYS[17], KEYS[18], KEYS[19]
local n_slot = tonumber(ARGV[8])
local consumer, node, jp = ARGV[9], ARGV[10], tonumber(ARGV[11])
local missing = 0
local i = 12
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
local k = 20
local unmark = {}  -- ids leaving the running hash: one HDEL for the batch
local any_cancelled, any_waiting = false, false
if n_runs > 0 then
  any_cancelled = redis.call('SCARD', cancelled) > 0
  any_waiting = redis.call('ZCARD', waiting) > 0
end
for _ = 1, n_runs do
  local cnt, st, ttl, hold, att, fin, err, with_res = tonumber(ARGV[i]), ARGV[i + 1],
    tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), ARGV[i + 4], ARGV[i + 5], ARGV[i + 6],
    ARGV[i + 7] ~= ''
  i = i + 8
  local final = st == 'succeeded' or st == 'dead' or st == 'cancelled'
  local e = err ~= '' and cjson.decode(err)
  for _ = 1, cnt do
    -- KEYS[k]: the record, KEYS[k + 1]: its done list, KEYS[k + 2]: its unique key
    -- (only in a run of unique jobs: its unique_for is given, '' otherwise)
    local rec, done, ukey = KEYS[k], KEYS[k + 1], KEYS[k + 2]
    local id, started, res = string.sub(rec, jp), ARGV[i], ''
    if with_res then
      res = ARGV[i + 1]
      i = i + 2
    else
      i = i + 1
    end
    if hold then k = k + 3 else k = k + 2 end
    unmark[#unmark + 1] = id
    if any_cancelled and redis.call('SISMEMBER', cancelled, id) == 1 then
      redis.call('SREM', kill, id)
      if final then redis.call('SREM', cancelled, id) end
    elseif (final and redis.call('EXPIRE', rec, ttl) == 1)
        or (not final and redis.call('EXISTS', rec) == 1) then
      if e or not final then
        -- A failure (rare): the fields may be gathered in a table.
        local f = {'status', st, 'attempts', att, 'consumer', consumer, 'node', node,
          'started_at', started}
        if final then f[11] = 'finished_at'; f[12] = fin end
        if res ~= '' then f[#f + 1] = 'result'; f[#f + 1] = res end
        if e then
          f[#f + 1] = 'error_type'; f[#f + 1] = e[1]
          f[#f + 1] = 'error'; f[#f + 1] = e[2]
          f[#f + 1] = 'traceback'; f[#f + 1] = e[3]
        end
        redis.call('HSET', rec, unpack(f))
      else
        -- The hot path, its arguments written out: a table and unpack() per job cost
        -- more than the HSET itself.
        if att ~= '1' then  -- a later try succeeded: the earlier failure is not its outcome
          redis.call('HDEL', rec, 'error_type', 'error', 'traceback')
        end
        if res ~= '' then
          redis.call('HSET', rec, 'status', st, 'attempts', att, 'consumer', consumer,
            'node', node, 'started_at', started, 'finished_at', fin, 'result', res)
        else
          redis.call('HSET', rec, 'status', st, 'attempts', att, 'consumer', consumer,
            'node', node, 'started_at', started, 'finished_at', fin)
        end
      end
      if final then
        if any_waiting and redis.call('ZREM', waiting, id) == 1 then
          -- Someone waits in get(): the item is the outcome itself (no raw newlines in
          -- JSON), so get() needs no second read; the only item, so every waiter sees
          -- what the record says. Fire-and-forget jobs skip this.
          redis.call('DEL', done)
          redis.call('RPUSH', done, st .. '\\n' .. att .. '\\n' .. res .. '\\n' .. err)
          redis.call('EXPIRE', done, ttl)
        end
        if hold and redis.call('GET', ukey) == id then
          if hold > 0 then
            redis.call('EXPIRE', ukey, math.ceil(hold))
          else
            redis.call('DEL', ukey)
          end
        end
      end
    end
  end
end
if #unmark > 0 then redis.call('HDEL', running, unpack(unmark)) end
for _ = 1, n_slot do
  redis.call('ZREM', KEYS[k], ARGV[i])
  k = k + 1
  i = i + 1
end
if n_ack > 0 then redis.call('HINCRBY', stats, 'processed', n_ack) end
if n_retry > 0 then redis.call('HINCRBY', stats, 'retried', n_retry) end
if n_dead > 0 then redis.call('HINCRBY', stats, 'dead', n_dead) end
if n_failed > 0 then redis.call('HINCRBY', stats, 'failed', n_failed) end
return missing
"""
)

# KEYS: queue, p1..p9, inflight, running. ARGV: items in the order they should run next.
# Puts them back at the RIGHT end (the head: they run before anything else waiting).
REQUEUE = (
    _TARGET
    + _REC
    + """
local n = 0
for i = #ARGV, 1, -1 do
  if redis.call('LREM', KEYS[11], -1, ARGV[i]) > 0 then
    redis.call('RPUSH', target(ARGV[i]), ARGV[i])
    local id = rec_id(ARGV[i])
    if id then redis.call('HDEL', KEYS[12], id) end
    n = n + 1
  end
end
return n
"""
)

# KEYS: queue, p1..p9, consumers, alive key, inflight of the dead consumer, running.
# ARGV: its id. Checks the lease inside the script: a consumer that renewed meanwhile
# keeps its jobs.
REAP = (
    _TARGET
    + _REC
    + """
if redis.call('EXISTS', KEYS[12]) == 1 then return -1 end
local n = 0
while true do
  local item = redis.call('LPOP', KEYS[13])
  if not item then break end
  redis.call('RPUSH', target(item), item)
  local id = rec_id(item)
  if id then redis.call('HDEL', KEYS[14], id) end
  n = n + 1
end
redis.call('ZREM', KEYS[11], ARGV[1])
return n
"""
)

# KEYS: queue, p1..p9, delayed, kill. ARGV: now, limit. Moves due jobs to the back of
# their list. Returns {how many, ids of running jobs to cancel}: the promoter runs every
# 0.25 s on every worker anyway, so learning of cancellations costs no extra command.
PROMOTE = (
    _TARGET
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, item in ipairs(due) do
  if redis.call('ZREM', KEYS[11], item) == 1 then
    redis.call('LPUSH', target(item), item)
  end
end
return {#due, redis.call('SMEMBERS', KEYS[12])}
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


@dataclass(frozen=True, slots=True)
class Limit:
    """A task's grid-wide limits: ``interval`` seconds between starts (rate_limit), and
    at most ``concurrency`` running at once (concurrency_limit); 0 = no such limit."""

    task: str
    interval: float = 0.0
    concurrency: int = 0


@dataclass(slots=True)
class RecordUpdate:
    """A job record's new state, written by the settle script (gridq/jobs.py)."""

    job_id: str
    status: str
    ttl: int
    key: str | None  # unique key to release when the job is finished
    unique_for: float
    attempts: int
    started_at: str  # unix time, repr()
    finished_at: str  # unix time, repr(): the batch's; "" while retrying
    result: str  # the return value as JSON; "" when there is none
    err: str  # "" or the JSON array [error_type, error, traceback]


@dataclass(slots=True)
class Settlement:
    """Outcomes collected for one atomic SETTLE call."""

    acks: list[bytes] = field(default_factory=list)
    results: list[bytes] = field(default_factory=list)
    retries: list[tuple[bytes, bytes, float]] = field(default_factory=list)
    deads: list[tuple[bytes, bytes]] = field(default_factory=list)
    failed: int = 0
    records: list[RecordUpdate] = field(default_factory=list)
    slots: list[tuple[str, str]] = field(default_factory=list)  # (task, job id) to free

    def __len__(self) -> int:
        return len(self.acks) + len(self.retries) + len(self.deads)


def _runs(records: list[RecordUpdate]) -> list[list[RecordUpdate]]:
    """Records in runs of neighbours that share everything the settle script takes
    once per run (status, TTL, uniqueness, attempts, error, whether there is a result)."""
    runs: list[list[RecordUpdate]] = []
    prev: RecordUpdate | None = None
    for r in records:
        if prev is None or not _same_run(prev, r):
            runs.append([])
        runs[-1].append(r)
        prev = r
    return runs


def _same_run(a: RecordUpdate, b: RecordUpdate) -> bool:
    return (
        a.status == b.status
        and a.ttl == b.ttl
        and a.attempts == b.attempts
        and a.finished_at == b.finished_at
        and a.err == b.err
        and bool(a.result) == bool(b.result)
        and (a.key is None) == (b.key is None)
        and a.unique_for == b.unique_for
    )


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
        limits: Sequence[Limit] = (),
        min_replicas: int = 0,
        out_min_replicas: int | None = None,
        node: str = "",
    ) -> None:
        self.conn = conn
        self.node = node  # written into the records of the jobs this consumer ran
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
        self._id_at = len(self.k.job("")) + 1  # the settle script reads ids off record keys
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
        self._adopt = conn.register_script(ADOPT)
        self.dropped: list[bytes] = []  # cancelled items the last claim dropped
        self.emptied = False  # the last claim took less than it could
        self.limits = list(limits)
        self._limit_keys: list[str] = []
        self._limit_args: list[str | int] = [len(self.limits)]
        for lim in self.limits:
            self._limit_keys += [self.k.rate(lim.task), self.k.slots(lim.task)]
            self._limit_args += [lim.task, repr(float(lim.interval)), int(lim.concurrency)]

    # --- taking jobs ------------------------------------------------------------------

    def claim(self, n: int) -> list[bytes] | None:
        """Up to ``n`` items, highest priority first; None while the queue is paused."""
        k = self.k
        res = self._claim(
            keys=[
                *self._route,
                k.paused,
                k.last_claim,
                self.inflight,
                k.running,
                k.cancelled,
                k.stats,
                k.kill,
                k.delayed,
                *self._limit_keys,
            ],
            args=[
                min(n, MAX_BATCH),
                repr(time.time()),
                self.consumer_id,
                repr(self.lease),
                *self._limit_args,
            ],
        )
        if isinstance(res, int):
            return None
        items, dropped = res
        self.dropped = list(dropped)
        # Took less than it could: the ready lists are empty now (or the rest is over
        # a limit, parked), so nothing else is there to batch with.
        self.emptied = len(items) + len(dropped) < min(n, MAX_BATCH)
        return list(items)

    def wait_claim(self, timeout: float) -> bytes | None:
        """Block until one item arrives in the queue list and move it in flight."""
        return self.conn.blmove(  # type: ignore[no-any-return]
            self.k.pending, self.inflight, timeout, "RIGHT", "LEFT"
        )

    def touch_last_claim(self) -> None:
        self.conn.set(self.k.last_claim, repr(time.time()))

    def adopt(self, item: bytes) -> str:
        """The claim's bookkeeping for an item ``wait_claim`` moved: "drop" (it was
        cancelled), "park" (over a limit: back in the delayed set), "run" (marked
        running), or "plain" (keeps no record, no limits here: nothing done, the
        caller touches last_claim itself after dispatching)."""
        m = REC_PREFIX.match(item)
        if m is None and not self.limits:
            return "plain"
        k = self.k
        res = self._adopt(
            keys=[
                self.inflight,
                k.running,
                k.cancelled,
                k.stats,
                k.last_claim,
                k.kill,
                k.delayed,
                *self._limit_keys,
            ],
            args=[
                item,
                m.group(1) if m else b"",
                repr(time.time()),
                self.consumer_id,
                repr(self.lease),
                *self._limit_args,
            ],
        )
        return {0: "drop", 1: "run", 2: "park"}[int(res)]

    def renew_slots(self, held: dict[str, list[str]]) -> None:
        """Extend the leases of the concurrency slots this worker holds (task -> ids)."""
        pipe = self.conn.pipeline(transaction=False)
        until = time.time() + self.lease
        for task, ids in held.items():
            pipe.zadd(self.k.slots(task), dict.fromkeys(ids, until), xx=True)
        pipe.execute()

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
        runs = _runs(s.records)
        args: list[bytes | str | float | int] = [
            repr(time.time()),
            len(s.acks),
            len(results),
            len(s.retries),
            len(s.deads),
            s.failed,
            len(runs),
            len(s.slots),
            self.consumer_id,
            self.node,
            self._id_at,
        ]
        args.extend(s.acks)
        args.extend(results)
        for old, new, due in s.retries:
            args.extend((old, new, repr(due)))
        for old, dead_rec in s.deads:
            args.extend((old, dead_rec))
        rec_keys: list[str] = []
        job, done = self.k.job, self.k.done
        for run in runs:
            r = run[0]
            hold = repr(r.unique_for) if r.key else ""
            args.extend(
                (
                    len(run),
                    r.status,
                    r.ttl,
                    hold,
                    r.attempts,
                    r.finished_at,
                    r.err,
                    "1" if r.result else "",
                )
            )
            for r in run:
                if r.result:
                    args.extend((r.started_at, r.result))
                else:
                    args.append(r.started_at)
                rec_keys += [job(r.job_id), done(r.job_id)]
                if r.key:
                    rec_keys.append(self.k.unique(r.key))
        for task, job_id in s.slots:
            rec_keys.append(self.k.slots(task))
            args.append(job_id)
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
            self.k.running,
            self.k.cancelled,
            self.k.kill,
            self.k.waiting,
            *rec_keys,
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
                    keys=[*self._route, self.inflight, self.k.running],
                    args=list(items[i : i + MAX_BATCH]),
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
                        self.k.running,
                    ],
                    args=[c],
                )
            )
            moved += max(n, 0)
        return moved

    def promote(self, limit: int = 200) -> tuple[int, list[str]]:
        """Move delayed jobs that are due back to their queue; returns how many, and
        the ids of running jobs someone cancelled (this worker may hold some)."""
        n, kill = self._promote(
            keys=[*self._route, self.k.delayed, self.k.kill], args=[time.time(), limit]
        )
        return int(n), [i.decode() if isinstance(i, bytes) else str(i) for i in kill]
