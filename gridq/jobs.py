"""Job records and handles: what became of a job, waiting for its result, cancelling it.

Every job enqueued through ``Queue.enqueue`` / ``Task.delay`` keeps a *record*, a HASH
``gridq:q:{Q}:job:<id>`` (docs/protocol.md "Job records"). Who writes what:

* the enqueue script: ``status`` queued or scheduled, ``task``, ``enqueued_at``,
  ``attempts`` 0, ``ttl`` and, for unique jobs, ``key``/``unique_for``; the record
  lives ``ttl`` (+ the delay) seconds so a waiting job never loses it;
* the worker's claim script: ``HSET gridq:q:{Q}:running <id> "<started_at> <consumer>"``
  (the record itself is not touched: a claim does not know its ids in advance, and Lua
  never builds key names). ``status()`` reads the two together;
* the worker's settle script, in the same batch that acknowledges the job: ``status``
  succeeded / retrying / dead / cancelled, ``attempts``, ``started_at``,
  ``finished_at``, ``consumer``, ``node``, ``result`` (JSON) and after a failure
  ``error_type``, ``error``, ``traceback``; a finished job's record expires ``ttl``
  seconds later and, if a ``get()`` waits for it (its id in the ZSET
  ``gridq:q:{Q}:waiting``), the list ``gridq:q:{Q}:done:<id>`` is set to one item
  carrying the outcome (same TTL);
* ``cancel()``: status cancelled at once, and the id in ``gridq:q:{Q}:cancelled``
  (a claim drops such a job without running it) and, if it runs, in
  ``gridq:q:{Q}:kill`` (its worker interrupts it, see worker/pools.py).

``get()`` blocks in Redis: ``BLMOVE done done`` (a rotation, so any number of
waiters in any number of processes see the same item), never a polling loop.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError

from gridq.errors import ConfigError, GridqError
from gridq.keys import QueueKeys
from gridq.settings import GridqSettings, describe

if TYPE_CHECKING:
    import redis

    from gridq.queue import Queue

QUEUED, SCHEDULED, RUNNING, RETRYING = "queued", "scheduled", "running", "retrying"
SUCCEEDED, DEAD, CANCELLED, UNKNOWN = "succeeded", "dead", "cancelled", "unknown"
WAITING = "waiting"  # a workflow's final job before its barrier fires (docs/workflows.md)
STATUSES = (QUEUED, SCHEDULED, WAITING, RUNNING, RETRYING, SUCCEEDED, DEAD, CANCELLED, UNKNOWN)
TERMINAL = frozenset({SUCCEEDED, DEAD, CANCELLED})

# Job ids sit unescaped inside the envelope's JSON, where the Lua scripts find them
# with a pattern: no quotes or backslashes.
_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,200}$")
# How long one BLMOVE blocks before get() checks the record again (a bound on a
# missed wake-up, not a poll interval: the wake-up itself is immediate).
_WAIT_CHUNK = 30.0
# A get()'s registration outlives its BLMOVE by this much (a slow round trip must not
# drop it while it blocks).
_WAIT_SLACK = 60.0


class JobFailed(GridqError):
    """The job went to the dead letters; carries its last error."""

    def __init__(
        self,
        job_id: str,
        error_type: str = "",
        error: str = "",
        traceback: str | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(f"job {job_id} failed: {error_type}: {error}")
        self.job_id = job_id
        self.error_type = error_type
        self.error = error
        self.traceback = traceback
        self.attempts = attempts


class JobCancelled(GridqError):
    """The job was cancelled. Also raised inside a running handler that is cancelled."""


class JobUnknown(GridqError, LookupError):
    """No record of this job: it never existed, kept none (result_ttl=0), or expired."""


class ResultSettings(GridqSettings):
    result_ttl: int = Field(86400, ge=0)  # GRIDQ_RESULT_TTL, seconds; 0 keeps nothing


@cache
def default_result_ttl() -> int:
    """``GRIDQ_RESULT_TTL`` (default 86400 s), read once, on the first enqueue."""
    try:
        return ResultSettings().result_ttl  # type: ignore[call-arg]  # from the environment
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def check_job_id(job_id: str) -> str:
    if not _ID.match(job_id):
        raise ValueError(
            f"job id {job_id!r}: use 1..200 letters, digits or _ . : @ + - "
            "(it is part of Redis key names)"
        )
    return job_id


def due_time(delay: float | None, eta: datetime | None) -> float | None:
    """Unix time the job is due, from ``delay=`` (seconds) or ``eta=`` (aware datetime)."""
    if delay is not None and eta is not None:
        raise ValueError("give delay= or eta=, not both")
    if eta is not None:
        if eta.tzinfo is None or eta.utcoffset() is None:
            raise ValueError("eta= must be an aware datetime (e.g. datetime.now(timezone.utc))")
        return eta.timestamp()
    if delay:
        if delay < 0:
            raise ValueError("delay= must be >= 0 seconds")
        return time.time() + delay
    return None


# KEYS: target (list or delayed ZSET), record, unique key (or the record when none).
# ARGV: item, id, record ttl, status, enqueued_at, task, due ('' = push to the list),
#   key ('' = not unique), unique_for, result ttl.
# Returns the id of the job that holds the unique key (this one when it was free).
ENQUEUE = """
if ARGV[8] ~= '' then
  local holder = redis.call('GET', KEYS[3])
  if holder then return holder end
  redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
  redis.call('HSET', KEYS[2], 'key', ARGV[8], 'unique_for', ARGV[9])
end
redis.call('HSET', KEYS[2], 'status', ARGV[4], 'task', ARGV[6], 'enqueued_at', ARGV[5],
  'attempts', 0, 'ttl', ARGV[10])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if ARGV[7] == '' then
  redis.call('LPUSH', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[7], ARGV[1])
end
return ARGV[2]
"""

# KEYS: record, cancelled, kill, running, done, unique key (or the record when none),
#   waiting.
# ARGV: id, now. Returns 0 (finished or unknown: nothing to do), 1 (will never start),
# 2 (running: its worker is told to interrupt it).
CANCEL = """
local rec = redis.call('HMGET', KEYS[1], 'status', 'ttl', 'unique_for')
local st = rec[1]
if not st or st == 'succeeded' or st == 'dead' or st == 'cancelled' then return 0 end
local ttl = tonumber(rec[2]) or 86400
if ttl < 1 then ttl = 1 end
redis.call('SADD', KEYS[2], ARGV[1])
local out = 1
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then
  redis.call('SADD', KEYS[3], ARGV[1])
  out = 2
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('RPUSH', KEYS[5], 'cancelled')
redis.call('EXPIRE', KEYS[5], ttl)
redis.call('ZREM', KEYS[7], ARGV[1])
if KEYS[6] ~= KEYS[1] and redis.call('GET', KEYS[6]) == ARGV[1] then
  local hold = tonumber(rec[3]) or 0
  if hold > 0 then redis.call('EXPIRE', KEYS[6], math.ceil(hold)) else redis.call('DEL', KEYS[6]) end
end
return out
"""

# KEYS: record, waiting, done. ARGV: id, until (unix time), now, marker ttl (seconds).
# A get() looks: drops lapsed waiters, reads the record, and registers as waiting
# while the job is unfinished (dropping a stale done list). A finished or unknown job
# gets no more pushes, so the script leaves a bare status in its done list (unless an
# item is there): the BLMOVE that get() sends in the same round trip returns at once
# instead of blocking.
WATCH = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local rec = redis.call('HGETALL', KEYS[1])
local st = false
for j = 1, #rec, 2 do
  if rec[j] == 'status' then st = rec[j + 1] end
end
if st and st ~= 'succeeded' and st ~= 'dead' and st ~= 'cancelled' then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  -- Whatever a done list holds while the job is unfinished is stale (a status left by
  -- a look before the job existed): it would wake the BLMOVE at once, again and again.
  redis.call('DEL', KEYS[3])
elseif redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('RPUSH', KEYS[3], st or 'unknown')
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return rec
"""
_MARKER_TTL = 10


def _text(v: Any) -> str | None:
    if v is None:
        return None
    return v.decode() if isinstance(v, bytes) else str(v)


def _fields(raw: dict[Any, Any]) -> dict[str, str]:
    """A record as text. Records an earlier gridq wrote kept the last try in one JSON
    field ``fin``: it is spread into fields of its own (such records expire in a day)."""
    rec = {_text(k) or "": _text(v) or "" for k, v in raw.items()}
    fin = rec.pop("fin", None)
    if fin:
        for k, v in json.loads(fin).items():
            rec[k] = "" if v is None else str(v)
    return rec


def _outcome_item(item: bytes | str | None) -> dict[str, str] | None:
    """The record's outcome fields from a done-list item the settle script wrote
    (``status\\nattempts\\nresult\\nerr``, written with the record); None for other
    items (a bare status: cancel(), workflows), which send get() to the record itself."""
    if isinstance(item, str):
        item = item.encode()
    parts = item.split(b"\n", 3) if item else []
    if len(parts) != 4:
        return None
    st, attempts, res, err = (p.decode() for p in parts)
    rec = {"status": st, "attempts": attempts, "result": res}
    if err:
        rec["error_type"], rec["error"], rec["traceback"] = json.loads(err)
    return rec


def _num(v: Any) -> float | None:
    t = _text(v)
    return float(t) if t not in (None, "") else None


class JobHandle:
    """A job in a queue: ``.id``, ``.queue``, ``get()``, ``status()``, ``info()``, ``cancel()``.

    ``str(handle)`` is the id, and a handle compares equal to its id. It pickles (as
    queue URL, queue name and id), so another process can wait for the same job."""

    __slots__ = ("id", "queue", "_q")

    def __init__(self, q: Queue, job_id: str) -> None:
        self.id = job_id
        self.queue = q.name
        self._q = q

    # --- identity ---------------------------------------------------------------------

    def __str__(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r}, queue={self.queue!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JobHandle):
            return (self.id, self.queue) == (other.id, other.queue)
        if isinstance(other, str):
            return self.id == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __reduce__(self) -> tuple[Any, ...]:
        url = self._q.url
        if url is None:
            raise TypeError(
                "this JobHandle's Queue was built from a connection, not a URL: "
                "pickle needs Queue.from_url(...)"
            )
        return (_restore, (url, self.queue, self.id))

    # --- reading ----------------------------------------------------------------------

    @property
    def _keys(self) -> QueueKeys:
        return self._q.keys

    @property
    def _conn(self) -> redis.Redis:
        return self._q.conn

    def _read(self) -> tuple[dict[str, str], str | None]:
        pipe = self._conn.pipeline(transaction=False)
        pipe.hgetall(self._keys.job(self.id))
        pipe.hget(self._keys.running, self.id)
        rec, running = pipe.execute()
        return _fields(rec), _text(running)

    @staticmethod
    def _status(rec: dict[str, str], running: str | None) -> str:
        st = rec.get("status")
        if not st:
            return UNKNOWN
        if running is not None and st not in TERMINAL:
            return RUNNING
        return st

    def status(self) -> str:
        """queued, scheduled, waiting (workflows), running, retrying, succeeded, dead,
        cancelled or unknown."""
        return self._status(*self._read())

    def info(self) -> dict[str, Any]:
        """status, attempts, enqueued_at, started_at, finished_at, consumer, node, the
        error fields (error_type, error, traceback) and the result (None until done)."""
        rec, running = self._read()
        st = self._status(rec, running)
        started, consumer = rec.get("started_at"), rec.get("consumer")
        if st == RUNNING and running:
            started, _, consumer = running.partition(" ")
        result = rec.get("result")
        return {
            "id": self.id,
            "queue": self.queue,
            "task": rec.get("task"),
            "status": st,
            "attempts": int(rec.get("attempts") or 0),
            "enqueued_at": _num(rec.get("enqueued_at")),
            "started_at": _num(started),
            "finished_at": _num(rec.get("finished_at")),
            "consumer": consumer or None,
            "node": rec.get("node") or None,
            "key": rec.get("key") or None,
            "error_type": rec.get("error_type") or None,
            "error": rec.get("error") or None,
            "traceback": rec.get("traceback") or None,
            "result": json.loads(result) if result else None,
        }

    def _outcome(self, rec: dict[str, str]) -> Any:
        st = rec.get("status")
        if st == SUCCEEDED:
            res = rec.get("result")
            return json.loads(res) if res else None
        if st == CANCELLED:
            raise JobCancelled(f"job {self.id} was cancelled")
        raise JobFailed(
            self.id,
            rec.get("error_type", ""),
            rec.get("error", ""),
            rec.get("traceback") or None,
            int(rec.get("attempts") or 0),
        )

    def get(self, timeout: float | None = None) -> Any:
        """The handler's return value, once the job is done. Raises JobFailed (dead),
        JobCancelled, TimeoutError (not done within ``timeout`` seconds) or JobUnknown."""
        end = None if timeout is None else time.monotonic() + timeout
        chunk = _block_limit(self._conn)
        while True:
            left = chunk if end is None else min(chunk, end - time.monotonic())
            rec, item = self._watch(max(left, 0.01))
            st = rec.get("status")
            if not st:
                raise JobUnknown(f"no record of job {self.id} in queue {self.queue!r}")
            if st in TERMINAL:
                return self._outcome(rec)
            outcome = _outcome_item(item)
            if outcome is not None:
                return self._outcome(outcome)
            if item is None and end is not None and time.monotonic() >= end:
                raise TimeoutError(f"job {self.id} not done within {timeout:g} s")
            # A bare status (cancel, workflows) or the end of a chunk: look again.

    def _watch(self, wait: float) -> tuple[dict[str, str], bytes | None]:
        """Look at the record and wait up to ``wait`` s for the job's done list, in one
        round trip: the WATCH script registers as waiting and reads the record (the
        settle script, atomic too, either ran before, and the record says so, or runs
        after and, seeing the id in the waiting ZSET, pushes to the done list), then
        ``BLMOVE done done`` blocks (a rotation, so every waiter sees the item). On a
        cluster client the two go one after the other (same slot, same outcome)."""
        from gridq.redisurl import is_cluster

        k = self._keys
        done = k.done(self.id)
        now = time.time()
        # EVAL, not a registered script's EVALSHA: in a pipeline, redis-py would first
        # ask SCRIPT EXISTS (another round trip); Redis caches the script by its digest.
        call: list[Any] = [WATCH, 3, k.job(self.id), k.waiting, done]
        call += [self.id, repr(now + wait + _WAIT_SLACK), repr(now), _MARKER_TTL]
        item: bytes | None = None
        try:
            if is_cluster(self._conn):
                raw = self._conn.eval(*call)
                item = self._conn.blmove(done, done, wait, "RIGHT", "LEFT")
            else:
                pipe = self._conn.pipeline(transaction=False)
                pipe.eval(*call)
                pipe.blmove(done, done, wait, "RIGHT", "LEFT")
                raw, item = pipe.execute()
        except redis_timeout():
            # The socket's own timeout (unknown to _block_limit): read without waiting.
            raw = self._conn.eval(*call)
        it = iter(raw)
        return _fields(dict(zip(it, it, strict=True))), item

    # --- control ----------------------------------------------------------------------

    def cancel(self) -> bool:
        """True when the job will never run, or it runs and its worker is told to stop
        it (``JobCancelled`` is raised in it); False when it is already finished/unknown."""
        k = self._keys
        key = _text(self._conn.hget(k.job(self.id), "key"))
        unique = k.unique(key) if key else k.job(self.id)
        res = self._conn.eval(
            CANCEL,
            7,
            k.job(self.id),
            k.cancelled,
            k.kill,
            k.running,
            k.done(self.id),
            unique,
            k.waiting,
            self.id,
            repr(time.time()),
        )
        return int(res) > 0


def _block_limit(conn: Any) -> float:
    """How long one blocking call may last on ``conn``: below its socket timeout
    (redis-py 8 defaults to 5 s and keeps it as ``orig_socket_timeout``)."""
    pool = getattr(conn, "connection_pool", None)
    kw = getattr(pool, "connection_kwargs", {}) if pool is not None else {}
    sock = kw.get("socket_timeout", kw.get("orig_socket_timeout", 5.0))
    if sock is None:
        return _WAIT_CHUNK
    return max(0.05, min(_WAIT_CHUNK, float(sock) * 0.8))


def redis_timeout() -> type[Exception]:
    import redis

    return redis.TimeoutError


def _restore(url: str, queue: str, job_id: str) -> JobHandle:
    from gridq.queue import Queue

    return Queue.from_url(url, queue).job(job_id)
