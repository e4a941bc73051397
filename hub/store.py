"""The hub's state in Redis: tasks, nodes, assignments, the sequential cursor.

Nothing lives only in process memory, so a restarted hub, or a second replica, sees
the same grid. Multi-key changes are atomic (MULTI or Lua), and scheduling passes
take a Redis lock so that two replicas never write assignments at the same time.

A heartbeat is one round trip: one Lua script checks the node (deleted: 410; the
secret's hash compared in constant time: 401), records the heartbeat and returns the
precomputed assignments. Scheduling never runs inside a heartbeat: assignments are
computed by passes triggered by changes (task, node registration, stop, delete) and by
a periodic pass (offline nodes, autoscale, sequential auto-advance), and stored per
node ready to send.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
import redis
import redis.asyncio as aioredis

from gridq import keys
from gridq.nodeproto import (
    Heartbeat,
    InstanceStatus,
    NodeInfo,
    RegisterRequest,
    RegisterResponse,
    WorkerSpec,
)
from gridq.queue import Queue
from gridq.redisurl import client as redis_client
from gridq.redisurl import explain, mask_text

from .config import HubSettings
from .models import LiveFigures, TaskRecord, TaskSpec
from .scheduler import NodeCapacity, TaskDemand, autoscale_replicas, norm_arch, place

log = logging.getLogger("gridq.hub")

NODE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
RATE_SAMPLE_EVERY = 5.0  # seconds between rate samples
RATE_SAMPLES = 60  # kept per task (5 minutes at one per 5 s)
RATE_WINDOW = 60.0  # seconds the rate is averaged over
EVENTS_KEPT = 500

T = TypeVar("T")


class NodeAuthError(Exception):
    """Unknown node id or wrong secret (401)."""


class NodeGone(Exception):
    """The node was deleted (410): it must register again."""


def _dumps(obj: Any) -> str:
    # Sorted and compact, so equal content gives equal strings (change detection).
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _caps(info: NodeInfo, draining: bool) -> str:
    """The part of a heartbeat scheduling depends on. Stored apart from the full record
    (which carries every instance) so a scheduling pass reads little and can tell
    cheaply that nothing changed."""
    # Built from pydantic-core's compact JSON rather than model_dump() + json.dumps: this
    # runs on every heartbeat. Deterministic for a given node (fields in model order,
    # labels as the node sends them); the scheduler's pre-check looks for the literal
    # '"draining":true', so the compact form matters.
    return f'{{"draining":{"true" if draining else "false"},"info":{info.model_dump_json()}}}'


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


CELERY_COMMAND = ["gridq", "celery", "worker"]


def celery_queues(spec: TaskSpec) -> list[str]:
    return list(spec.queues) if spec.queues else [q for q in spec.input_queue.split(",") if q]


def worker_spec(spec: TaskSpec) -> WorkerSpec:
    """What a node needs to run the task's workers; the environment CONTRACT.md names.

    NODE_ID, INSTANCE_ID and GRIDQ_METRICS_PORT are per instance: the node adds them.
    """
    env: dict[str, str] = dict(spec.env)
    env.update(
        {
            "TASK_NAME": spec.name,
            "INPUT_REDIS_URL": spec.input_redis,
            "OUTPUT_REDIS_URL": spec.out_redis,
            "INPUT_QUEUE": spec.input_queue,
            "OUTPUT_QUEUE": spec.output_queue,
            "GRIDQ_WORKER_POOL": spec.pool,
        }
    )
    if spec.concurrency is not None:
        env["GRIDQ_WORKER_CONCURRENCY"] = str(spec.concurrency)
    command = spec.command
    if spec.kind == "celery":
        # The wrapper (gridq.worker.celery) reads the app and queues from here and the
        # broker URL from INPUT_REDIS_URL: nothing secret on the command line.
        env["GRIDQ_CELERY_APP"] = spec.app or ""
        env["INPUT_QUEUE"] = ",".join(spec.queues) if spec.queues else spec.input_queue
        if not command and not (spec.image or spec.images):
            command = CELERY_COMMAND
    body: dict[str, Any] = {
        "kind": spec.kind,
        "image": spec.image,
        "images": spec.images,
        "command": command,
        "env": env,
        "resources": spec.resources.model_dump(),
    }
    return WorkerSpec.model_validate({**body, "spec_hash": spec_hash_of(body)})


def spec_hash_of(body: dict[str, Any]) -> str:
    """Stable over image/images/command/env/resources/kind: any change rolls workers over."""
    return hashlib.sha256(_dumps(body).encode()).hexdigest()[:16]


def demand_of(spec: TaskSpec, replicas: int) -> TaskDemand:
    arches = spec.constraints.arches()
    return TaskDemand(
        name=spec.name,
        replicas=replicas,
        memory_mb=spec.resources.memory_mb,
        arches=frozenset(norm_arch(a) for a in arches) if arches else None,
        labels=dict(spec.constraints.labels),
        has_image=bool(spec.image or spec.images),
        has_command=bool(spec.command)
        or (spec.kind == "celery" and not (spec.image or spec.images)),
        image_arches=frozenset(norm_arch(p) for p in spec.images),
        has_generic_image=bool(spec.image),
    )


@dataclass
class NodeView:
    """A node as read back from Redis, with its derived status."""

    node_id: str
    record: dict[str, Any]  # the last heartbeat (or the registration info)
    meta: dict[str, Any]
    last_seen: float | None
    status: str
    assigned: dict[str, int]

    @property
    def info(self) -> NodeInfo:
        return NodeInfo.model_validate(self.record["info"])

    @property
    def instances(self) -> list[InstanceStatus]:
        out = []
        for raw in self.record.get("instances", []):
            try:
                out.append(InstanceStatus.model_validate(raw))
            except ValueError:  # pragma: no cover - records are validated on write
                continue
        return out


# The whole heartbeat in one round trip: authenticate, record, answer.
# - 410 before 401, as authenticate_node: a deleted node is told to register again.
# - The presented secret's SHA-256 (hex, computed by the hub, always 64 characters) is
#   compared with the stored one in constant time: every byte is XORed and OR-ed in,
#   no early exit, and an unknown node is compared against a dummy hash. (This is
#   hmac.compare_digest's job elsewhere; here it runs where the hash is, so the check
#   and the write are one step and a wrong secret writes nothing.)
# - The heartbeat is recorded only if the node still exists (a delete racing with a
#   heartbeat must not resurrect the node), and the answer's parts come back with it.
# KEYS: meta, nodes, seen, assignments, state, caps, the node's secret, deleted set.
# ARGV: node id, record JSON, now, caps JSON, sha256 hex of the presented secret.
# Returns {0} (401), {2} (410), or {1, meta, assignments, spec_version}.
_HEARTBEAT = """
if redis.call('SISMEMBER', KEYS[8], ARGV[1]) == 1 then return {2} end
local stored = redis.call('GET', KEYS[7])
local expected = stored or string.rep('0', 64)
local given = ARGV[5]
local diff = 0
if #expected ~= #given then diff = 1 end
for i = 1, #given do
  diff = bit.bor(diff, bit.bxor(string.byte(given, i), string.byte(expected, i) or 0))
end
if diff ~= 0 or not stored then return {0} end
local meta = redis.call('HGET', KEYS[1], ARGV[1])
if not meta then return {2} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
if redis.call('HGET', KEYS[6], ARGV[1]) ~= ARGV[4] then
  redis.call('HSET', KEYS[6], ARGV[1], ARGV[4])
end
local a = redis.call('HGET', KEYS[4], ARGV[1])
local v = redis.call('HGET', KEYS[5], 'spec_version')
return {1, meta, a or '[]', v or '0'}
"""

# What authenticating a node needs, in one round trip: deleted? and the secret's hash.
# The comparison itself stays in Python (hmac.compare_digest, constant time).
_AUTH_READ = """
return {redis.call('SISMEMBER', KEYS[2], ARGV[1]), redis.call('GET', KEYS[1])}
"""

# Creates a task only if the name is free, and gives it the next registration number.
_CREATE_TASK = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
return 1
"""

_UPDATE_TASK = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Coalescer:
    """Runs an async function so that concurrent requests share one run that starts
    after the request was made (so it sees the request's change), instead of each
    request running its own: 100 nodes registering at once cause a few passes, not 100."""

    def __init__(self, fn: Callable[[], Awaitable[T]]) -> None:
        self._fn = fn
        self._lock = asyncio.Lock()
        self._waiting: asyncio.Future[Any] | None = None

    async def run(self) -> Any:
        if self._waiting is not None:
            return await asyncio.shield(self._waiting)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._waiting = fut
        async with self._lock:
            # From here on, new requests need a new run: this one may have read already.
            if self._waiting is fut:
                self._waiting = None
            try:
                result = await self._fn()
            except BaseException as exc:
                fut.set_exception(exc)
                raise
            fut.set_result(result)
            return result


class Store:
    def __init__(self, settings: HubSettings, conn: aioredis.Redis | None = None) -> None:
        self.settings = settings
        # A blocking pool: when more requests wait on Redis than there are connections
        # (a hub briefly overloaded by heartbeats), they queue for a connection instead
        # of failing with "Too many connections" (503). Redis serves one command at a
        # time anyway; more connections would only add sockets to the event loop.
        self.r: aioredis.Redis = conn or aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                settings.redis_url,
                decode_responses=True,
                socket_connect_timeout=2.0,
                socket_timeout=5.0,
                health_check_interval=30,
                max_connections=64,
                timeout=10.0,
            )
        )
        self._heartbeat = self.r.register_script(_HEARTBEAT)
        self._auth_read = self.r.register_script(_AUTH_READ)
        self._create_task = self.r.register_script(_CREATE_TASK)
        self._update_task = self.r.register_script(_UPDATE_TASK)
        self._unlock = self.r.register_script(_UNLOCK)
        self._pass = Coalescer(self._schedule_locked)
        # Sync clients to the tasks' own Redis servers, for live figures; a cache of
        # connections, not state.
        self._task_clients: dict[str, redis.Redis] = {}

    async def close(self) -> None:
        await self.r.aclose()
        for c in self._task_clients.values():
            c.close()
        self._task_clients.clear()

    async def ping(self) -> None:
        await self.r.ping()

    async def event(self, text: str) -> None:
        """Record a notable change (masked) for GET /api/events."""
        line = _dumps({"time": time.time(), "event": mask_text(text)})
        pipe = self.r.pipeline(transaction=False)
        pipe.lpush(keys.HUB_EVENTS, line)
        pipe.ltrim(keys.HUB_EVENTS, 0, EVENTS_KEPT - 1)
        await pipe.execute()

    async def events(self, limit: int = 100) -> list[dict[str, Any]]:
        return [json.loads(x) for x in await self.r.lrange(keys.HUB_EVENTS, 0, limit - 1)]

    # --- tasks -----------------------------------------------------------------------

    async def get_task(self, name: str) -> TaskRecord | None:
        raw = await self.r.hget(keys.HUB_TASKS, name)
        return TaskRecord.model_validate_json(raw) if raw else None

    async def list_tasks(self) -> list[TaskRecord]:
        pipe = self.r.pipeline(transaction=False)
        pipe.zrange(keys.HUB_TASK_ORDER, 0, -1)
        pipe.hgetall(keys.HUB_TASKS)
        order, raw = await pipe.execute()
        seen = set(order)
        names = list(order) + sorted(n for n in raw if n not in seen)
        return [TaskRecord.model_validate_json(raw[n]) for n in names if n in raw]

    async def create_task(self, rec: TaskRecord) -> bool:
        ok = await self._create_task(
            keys=[keys.HUB_TASKS, keys.HUB_TASK_ORDER, keys.HUB_TASK_SEQ],
            args=[rec.spec.name, rec.model_dump_json()],
        )
        return bool(ok)

    async def put_task(self, rec: TaskRecord) -> bool:
        ok = await self._update_task(
            keys=[keys.HUB_TASKS], args=[rec.spec.name, rec.model_dump_json()]
        )
        return bool(ok)

    async def delete_task(self, name: str) -> bool:
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(keys.HUB_TASKS, name)
        pipe.zrem(keys.HUB_TASK_ORDER, name)
        pipe.delete(keys.hub_task_rate(name))
        res = await pipe.execute()
        return bool(res[0])

    # --- live figures from the tasks' own Redis ----------------------------------------

    def _queue(self, url: str, name: str) -> Queue:
        conn = self._task_clients.get(url)
        if conn is None:
            t = self.settings.stats_timeout
            conn = redis_client(url, timeout=t, health_check_interval=0, retry_on_timeout=False)
            self._task_clients[url] = conn
        return Queue(conn, name, url=url)

    def _celery_stats(self, spec: TaskSpec) -> dict[str, Any]:
        """Celery tasks: depth from kombu's lists (priority lists included), counters from
        the gridq stats hash the Celery instrumentation keeps, per queue, summed."""
        from gridq.worker.celery_depth import celery_queue_depth_detail

        total: dict[str, Any] = {}
        for name in celery_queues(spec):
            q = self._queue(spec.input_redis, name)
            st = dict(q.stats())
            d = celery_queue_depth_detail(q.conn, name)
            st["depth"], st["in_flight"], st["oldest_age"] = d["waiting"], d["unacked"], None
            for k, v in st.items():
                if isinstance(v, int | float) and k not in ("last_claim",):
                    total[k] = total.get(k, 0) + v
                elif k not in total:
                    total[k] = v
        return total

    def _stats_sync(self, spec: TaskSpec) -> dict[str, Any]:
        try:
            if spec.kind == "celery":
                return self._celery_stats(spec)
            return dict(self._queue(spec.input_redis, spec.input_queue).stats())
        except Exception as exc:
            err = explain(exc, spec.input_redis)
            msg = str(err) if err else f"cannot read queue figures: {type(exc).__name__}"
            return {"error": mask_text(msg)}

    async def stats(self, spec: TaskSpec) -> dict[str, Any]:
        if not spec.input_queue:
            return {"error": "the task has no input queue"}
        return await anyio.to_thread.run_sync(self._stats_sync, spec)

    async def stats_many(self, specs: Iterable[TaskSpec]) -> dict[str, dict[str, Any]]:
        specs = list(specs)
        results = await asyncio.gather(*(self.stats(s) for s in specs))
        return {s.name: r for s, r in zip(specs, results, strict=True)}

    async def live(self, spec: TaskSpec, st: dict[str, Any] | None = None) -> LiveFigures:
        st = st if st is not None else await self.stats(spec)
        if "error" in st:
            return LiveFigures(error=st["error"])
        rate = await self._rate(spec.name, float(st.get("processed") or 0))
        fields = {k: st.get(k) for k in LiveFigures.model_fields if k not in ("rate", "error")}
        return LiveFigures(**fields, rate=rate)

    async def _rate(self, name: str, processed_now: float) -> float | None:
        now = time.time()
        samples = await self.r.lrange(keys.hub_task_rate(name), 0, -1)
        oldest: tuple[float, float] | None = None
        for s in samples:  # newest first; keep the oldest inside the window
            t, p = (float(x) for x in s.split(":", 1))
            if now - t <= RATE_WINDOW:
                oldest = (t, p)
        if oldest is None or now - oldest[0] < 1.0:
            return None
        return round(max(0.0, processed_now - oldest[1]) / (now - oldest[0]), 3)

    async def sample_rates(self, stats: dict[str, dict[str, Any]]) -> None:
        now = time.time()
        last = await self.r.hget(keys.HUB_STATE, "rate_sampled_at")
        if last and now - float(last) < RATE_SAMPLE_EVERY:
            return
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(keys.HUB_STATE, "rate_sampled_at", str(now))
        for name, st in stats.items():
            if "error" in st:
                continue
            k = keys.hub_task_rate(name)
            pipe.lpush(k, f"{now}:{int(st.get('processed') or 0)}")
            pipe.ltrim(k, 0, RATE_SAMPLES - 1)
        await pipe.execute()

    # --- nodes -----------------------------------------------------------------------

    async def register_node(self, req: RegisterRequest) -> tuple[RegisterResponse, bool]:
        """Returns the response and whether an existing identity was resumed."""
        now = time.time()
        record = _dumps(
            {"info": req.info.model_dump(), "instances": [], "errors": [], "draining": False}
        )
        if req.node_id and req.secret and NODE_ID_RE.match(req.node_id):
            pipe = self.r.pipeline(transaction=False)
            pipe.get(keys.hub_node_secret(req.node_id))
            pipe.sismember(keys.HUB_NODES_DELETED, req.node_id)
            pipe.hget(keys.HUB_NODE_META, req.node_id)
            stored, deleted, meta_raw = await pipe.execute()
            if (
                stored
                and not deleted
                and meta_raw
                and hmac.compare_digest(stored.encode(), secret_hash(req.secret).encode())
            ):
                meta = json.loads(meta_raw)
                meta.update(stop=False, left=False, resumed_at=now)
                pipe = self.r.pipeline(transaction=True)
                pipe.hset(keys.HUB_NODE_META, req.node_id, _dumps(meta))
                pipe.hset(keys.HUB_NODES, req.node_id, record)
                pipe.hset(keys.HUB_NODE_CAPS, req.node_id, _caps(req.info, False))
                pipe.zadd(keys.HUB_NODE_SEEN, {req.node_id: now})
                await pipe.execute()
                await self.event(f"node {req.node_id} ({req.info.hostname}) resumed")
                return (
                    RegisterResponse(
                        node_id=req.node_id,
                        secret=req.secret,
                        heartbeat_interval=self.settings.heartbeat_interval,
                    ),
                    True,
                )
            # A wrong secret never resumes the id: the caller gets a fresh identity.
            log.info(
                "node %s could not resume its id (unknown, deleted or wrong secret)", req.node_id
            )
        secret = secrets.token_urlsafe(32)
        meta = _dumps({"registered_at": now, "stop": False, "left": False})
        base = _slug(req.info.hostname)
        while True:
            node_id = f"{base}-{secrets.token_hex(3)}"
            if await self.r.hsetnx(keys.HUB_NODE_META, node_id, meta):
                break
        pipe = self.r.pipeline(transaction=True)
        pipe.set(keys.hub_node_secret(node_id), secret_hash(secret))
        pipe.hset(keys.HUB_NODES, node_id, record)
        pipe.hset(keys.HUB_NODE_CAPS, node_id, _caps(req.info, False))
        pipe.zadd(keys.HUB_NODE_SEEN, {node_id: now})
        await pipe.execute()
        await self.event(f"node {node_id} ({req.info.hostname}) registered")
        return (
            RegisterResponse(
                node_id=node_id, secret=secret, heartbeat_interval=self.settings.heartbeat_interval
            ),
            False,
        )

    async def authenticate_node(self, node_id: str, secret: str) -> None:
        """Raise NodeGone (410) or NodeAuthError (401); constant-time on the secret."""
        if not NODE_ID_RE.match(node_id):
            raise NodeAuthError("unknown node")
        # One small script rather than a pipeline: same single round trip, a fraction
        # of redis-py's pipeline overhead on the heartbeat path.
        deleted, stored = await self._auth_read(
            keys=[keys.hub_node_secret(node_id), keys.HUB_NODES_DELETED], args=[node_id]
        )
        if int(deleted):
            raise NodeGone("node deleted")
        # Compare even when nothing is stored, so timing does not tell ids apart.
        expected = (stored or "0" * 64).encode()
        if not hmac.compare_digest(expected, secret_hash(secret).encode()) or not stored:
            raise NodeAuthError("unknown node or wrong secret")

    async def heartbeat(self, node_id: str, secret: str, hb: Heartbeat) -> bytes:
        """Authenticate and record the heartbeat in one round trip (see _HEARTBEAT);
        return the HeartbeatResponse JSON, ready to send. Raises NodeGone (410) or
        NodeAuthError (401) like authenticate_node."""
        if not NODE_ID_RE.match(node_id):
            raise NodeAuthError("unknown node")
        now = time.time()
        res = await self._heartbeat(
            keys=[
                keys.HUB_NODE_META,
                keys.HUB_NODES,
                keys.HUB_NODE_SEEN,
                keys.HUB_ASSIGNMENTS,
                keys.HUB_STATE,
                keys.HUB_NODE_CAPS,
                keys.hub_node_secret(node_id),
                keys.HUB_NODES_DELETED,
            ],
            args=[
                node_id,
                hb.model_dump_json(),
                now,
                _caps(hb.info, hb.draining),
                secret_hash(secret),
            ],
        )
        code = int(res[0]) if res else 2
        if code == 2:
            raise NodeGone("node deleted")
        if code == 0:
            raise NodeAuthError("unknown node or wrong secret")
        meta = json.loads(res[1])
        stop = bool(meta.get("stop"))
        assignments = "[]" if stop else res[2]
        return (
            f'{{"node_id":{json.dumps(node_id)},"spec_version":{int(res[3])},'
            f'"assignments":{assignments},"stop":{"true" if stop else "false"},'
            f'"heartbeat_interval":{json.dumps(self.settings.heartbeat_interval)},'
            f'"server_time":{json.dumps(now)}}}'
        ).encode()

    async def leave(self, node_id: str) -> None:
        await self._update_meta(node_id, left=True)
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(keys.HUB_ASSIGNMENTS, node_id)
        pipe.hincrby(keys.HUB_STATE, "spec_version", 1)
        await pipe.execute()
        await self.event(f"node {node_id} left")

    async def request_stop(self, node_id: str) -> bool:
        ok = await self._update_meta(node_id, stop=True)
        if ok:
            await self.event(f"node {node_id}: stop requested")
        return ok

    async def _update_meta(self, node_id: str, **changes: Any) -> bool:
        raw = await self.r.hget(keys.HUB_NODE_META, node_id)
        if not raw:
            return False
        meta = json.loads(raw)
        meta.update(changes)
        await self.r.hset(keys.HUB_NODE_META, node_id, _dumps(meta))
        return True

    async def delete_node(self, node_id: str) -> bool:
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(keys.HUB_NODE_META, node_id)
        pipe.hdel(keys.HUB_NODES, node_id)
        pipe.hdel(keys.HUB_NODE_CAPS, node_id)
        pipe.zrem(keys.HUB_NODE_SEEN, node_id)
        pipe.hdel(keys.HUB_ASSIGNMENTS, node_id)
        pipe.delete(keys.hub_node_secret(node_id))
        pipe.sadd(keys.HUB_NODES_DELETED, node_id)
        pipe.hincrby(keys.HUB_STATE, "spec_version", 1)
        res = await pipe.execute()
        if res[0]:
            await self.event(f"node {node_id} deleted")
        return bool(res[0])

    def _status(
        self, meta: dict[str, Any], record: dict[str, Any], last_seen: float | None, now: float
    ) -> str:
        if meta.get("left"):
            return "left"
        if last_seen is None or now - last_seen > self.settings.offline_after:
            return "offline"
        if meta.get("stop"):
            return "stopping"
        if record.get("draining"):
            return "draining"
        return "online"

    async def list_nodes(self, only: str | None = None) -> list[NodeView]:
        pipe = self.r.pipeline(transaction=False)
        if only is None:
            pipe.hgetall(keys.HUB_NODE_META)
            pipe.hgetall(keys.HUB_NODES)
            pipe.zrange(keys.HUB_NODE_SEEN, 0, -1, withscores=True)
            pipe.hgetall(keys.HUB_ASSIGNMENTS)
            metas, records, seen_list, assigns = await pipe.execute()
            seen = dict(seen_list)
        else:
            pipe.hget(keys.HUB_NODE_META, only)
            pipe.hget(keys.HUB_NODES, only)
            pipe.zscore(keys.HUB_NODE_SEEN, only)
            pipe.hget(keys.HUB_ASSIGNMENTS, only)
            m, rec, score, a = await pipe.execute()
            metas = {only: m} if m else {}
            records = {only: rec} if rec else {}
            seen = {only: score} if score is not None else {}
            assigns = {only: a} if a else {}
        now = time.time()
        out = []
        for nid in sorted(metas):
            record = json.loads(records[nid]) if nid in records else {}
            if "info" not in record:
                continue
            meta = json.loads(metas[nid])
            last = seen.get(nid)
            assigned = {a["task"]: a["replicas"] for a in json.loads(assigns.get(nid, "[]"))}
            out.append(
                NodeView(
                    node_id=nid,
                    record=record,
                    meta=meta,
                    last_seen=float(last) if last is not None else None,
                    status=self._status(meta, record, last, now),
                    assigned=assigned,
                )
            )
        return out

    async def get_node(self, node_id: str) -> NodeView | None:
        views = await self.list_nodes(only=node_id)
        return views[0] if views else None

    async def is_deleted(self, node_id: str) -> bool:
        return bool(await self.r.sismember(keys.HUB_NODES_DELETED, node_id))

    # --- scheduling -------------------------------------------------------------------

    async def state(self) -> dict[str, str]:
        return dict(await self.r.hgetall(keys.HUB_STATE))

    async def schedule(self) -> dict[str, Any]:
        """Recompute assignments now (coalesced with concurrent requests)."""
        return dict(await self._pass.run())

    async def _lock(self, wait: float) -> str | None:
        token = secrets.token_hex(8)
        deadline = time.monotonic() + wait
        while True:
            if await self.r.set(keys.HUB_SCHEDULE_LOCK, token, nx=True, px=15_000):
                return token
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.02)

    async def _schedule_locked(self, wait: float = 5.0) -> dict[str, Any]:
        token = await self._lock(wait)
        if token is None:
            log.warning("scheduling pass skipped: another hub replica holds the lock")
            return {}
        try:
            return await self._schedule_pass()
        finally:
            await self._unlock(keys=[keys.HUB_SCHEDULE_LOCK], args=[token])

    async def sequence(self, action: str) -> tuple[bool, str, str | None]:
        """Sequential mode: ``next`` or ``finish`` the current task, under the lock."""
        token = await self._lock(5.0)
        if token is None:
            return False, "the hub is busy scheduling; try again", None
        try:
            tasks = await self.list_tasks()
            st = await self.state()
            cur = _current(tasks, st.get("seq_current") or None)
            if cur is None:
                return False, "no unfinished task: nothing to advance", None
            names = [t.spec.name for t in tasks]
            after = [t for t in tasks[names.index(cur) + 1 :] if not t.finished]
            if action == "next" and not after:
                return (
                    False,
                    f"{cur} is the last task: nothing changed (POST /api/tasks/finish finishes it)",
                    cur,
                )
            await self._finish(tasks, cur, after[0].spec if after else None)
            new = after[0].spec.name if after else None
            msg = (
                f"{cur} finished; {new} runs now"
                if new
                else f"{cur} finished; no task left, nothing runs"
            )
        finally:
            await self._unlock(keys=[keys.HUB_SCHEDULE_LOCK], args=[token])
        await self.schedule()
        return True, msg, new

    async def _finish(self, tasks: list[TaskRecord], cur: str, new: TaskSpec | None) -> None:
        rec = next(t for t in tasks if t.spec.name == cur)
        rec.finished = True
        rec.updated_at = time.time()
        start = 0
        if new is not None:
            st = await self.stats(new)
            start = int(st.get("processed") or 0)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(keys.HUB_TASKS, cur, rec.model_dump_json())
        pipe.hset(
            keys.HUB_STATE,
            mapping={"seq_current": new.name if new else "", "seq_start_processed": start},
        )
        await pipe.execute()
        await self.event(
            f"sequential: {cur} finished" + (f", {new.name} starts" if new else ", nothing left")
        )

    async def _schedule_pass(self) -> dict[str, Any]:
        s = self.settings
        tasks = await self.list_tasks()
        # Only what scheduling needs of each node: small records, not the full heartbeats.
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(keys.HUB_NODE_META)
        pipe.hgetall(keys.HUB_NODE_CAPS)
        pipe.zrange(keys.HUB_NODE_SEEN, 0, -1, withscores=True)
        pipe.hgetall(keys.HUB_STATE)
        pipe.hgetall(keys.HUB_ASSIGNMENTS)
        metas, caps, seen_list, st, old_assign = await pipe.execute()
        seen = dict(seen_list)

        desired: dict[str, int] = {}
        stats_needed = [t.spec for t in tasks if t.spec.autoscale and not t.paused]
        current: str | None = None
        if s.scheduling == "sequential":
            current = _current(tasks, st.get("seq_current") or None)
            if current and current != (st.get("seq_current") or None):
                # A task became current without /next (first task, or added after the
                # end): remember where its counter started, for auto-advance.
                spec = next(t.spec for t in tasks if t.spec.name == current)
                start = int((await self.stats(spec)).get("processed") or 0)
                await self.r.hset(
                    keys.HUB_STATE, mapping={"seq_current": current, "seq_start_processed": start}
                )
                st["seq_start_processed"] = str(start)
            if current:
                stats_needed.append(next(t.spec for t in tasks if t.spec.name == current))
        stats = await self.stats_many({sp.name: sp for sp in stats_needed}.values())

        if s.scheduling == "sequential" and current and s.auto_advance:
            cst = stats.get(current, {})
            drained = "error" not in cst and not (
                cst.get("depth") or cst.get("in_flight") or cst.get("delayed")
            )
            if drained and int(cst.get("processed") or 0) > int(st.get("seq_start_processed") or 0):
                names = [t.spec.name for t in tasks]
                after = [t for t in tasks[names.index(current) + 1 :] if not t.finished]
                await self._finish(tasks, current, after[0].spec if after else None)
                log.info("sequential: %s drained, advancing", current)
                return await self._schedule_pass()

        for t in tasks:
            sp = t.spec
            n = sp.replicas
            if sp.autoscale:
                stt = stats.get(sp.name, {})
                if "error" in stt:
                    n = sp.autoscale.min
                else:
                    backlog = int(stt.get("depth") or 0) + int(stt.get("in_flight") or 0)
                    n = autoscale_replicas(
                        backlog,
                        sp.autoscale.min,
                        sp.autoscale.max,
                        sp.autoscale.target_depth_per_worker,
                    )
            if t.paused or t.finished or (s.scheduling == "sequential" and sp.name != current):
                n = 0
            desired[sp.name] = n

        now = time.time()
        online: list[tuple[str, str]] = []
        for nid in sorted(caps):
            if nid not in metas:
                continue
            cap = caps[nid]
            # Cheap pre-check on the raw string; parsed only below, if needed.
            draining = '"draining":true' in cap
            status = self._status(
                json.loads(metas[nid]), {"draining": draining}, seen.get(nid), now
            )
            if status == "online":
                online.append((nid, cap))
        # Nothing that decides placement changed since the last pass (the usual case for
        # the periodic pass): skip the work and the writes.
        fp = hashlib.sha256()
        for t in tasks:
            fp.update(t.model_dump_json(exclude={"updated_at", "created_at"}).encode())
        fp.update(_dumps(desired).encode())
        for nid, cap in online:
            fp.update(nid.encode() + b"\0" + cap.encode())
        for nid in sorted(old_assign):
            fp.update(nid.encode() + b"\0" + old_assign[nid].encode())
        fingerprint = fp.hexdigest()
        if fingerprint == st.get("fingerprint") and "summary" in st:
            return dict(json.loads(st["summary"]))

        # Placement is CPU work that grows with the grid: run it off the event loop so
        # heartbeats keep flowing meanwhile.
        new_assign, summary = await anyio.to_thread.run_sync(
            _compute, tasks, desired, online, old_assign
        )
        changed = {nid: v for nid, v in new_assign.items() if old_assign.get(nid) != v}
        removed = [nid for nid in old_assign if nid not in new_assign]
        pipe = self.r.pipeline(transaction=True)
        if changed:
            pipe.hset(keys.HUB_ASSIGNMENTS, mapping=changed)
        if removed:
            pipe.hdel(keys.HUB_ASSIGNMENTS, *removed)
        if changed or removed:
            pipe.hincrby(keys.HUB_STATE, "spec_version", 1)
        pipe.hset(
            keys.HUB_STATE,
            mapping={
                "summary": _dumps(summary),
                "fingerprint": _new_fp(fingerprint, changed, removed),
            },
        )
        await pipe.execute()
        if changed or removed:
            log.info("assignments changed on %d node(s)", len(changed) + len(removed))
        return summary

    async def periodic(self) -> None:
        """One tick of the background loop: reschedule, sample rates."""
        token = await self._lock(0)
        if token is None:
            return
        try:
            await self._schedule_pass()
            tasks = [t.spec for t in await self.list_tasks()]
            last = await self.r.hget(keys.HUB_STATE, "rate_sampled_at")
            if not last or time.time() - float(last) >= RATE_SAMPLE_EVERY:
                await self.sample_rates(await self.stats_many(tasks))
        finally:
            await self._unlock(keys=[keys.HUB_SCHEDULE_LOCK], args=[token])

    async def summary(self) -> dict[str, dict[str, int]]:
        raw = await self.r.hget(keys.HUB_STATE, "summary")
        return json.loads(raw) if raw else {}


def _new_fp(fingerprint: str, changed: dict[str, str], removed: list[str]) -> str:
    # The fingerprint covers the assignments read at the start; when this pass rewrote
    # them, the next pass must not skip (it has to confirm the new state is stable).
    return "" if changed or removed else fingerprint


def _compute(
    tasks: list[TaskRecord],
    desired: dict[str, int],
    online: list[tuple[str, str]],
    old_assign: dict[str, str],
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Placement and the per-node assignment JSON (pure; runs in a worker thread)."""
    capacities = []
    for nid, cap in online:
        info = json.loads(cap)["info"]
        capacities.append(
            NodeCapacity(
                node_id=nid,
                arch=info["arch"],
                runtime=info["runtime"],
                slots=int(info["parallelism"]),
                memory_mb=int(info.get("memory_mb") or 0),
                container_memory_mb=int(info.get("container_memory_mb") or 1024),
                labels=info.get("labels") or {},
            )
        )
    previous = {
        nid: {a["task"]: a["replicas"] for a in json.loads(raw)} for nid, raw in old_assign.items()
    }
    result = place([demand_of(t.spec, desired[t.spec.name]) for t in tasks], capacities, previous)
    # Each task's spec serialised once, not once per node.
    spec_json = {t.spec.name: _dumps(worker_spec(t.spec).model_dump(mode="json")) for t in tasks}
    new_assign: dict[str, str] = {}
    for nid, per_task in result.placement.items():
        items = ",".join(
            f'{{"replicas":{n},"spec":{spec_json[name]},"task":{json.dumps(name)}}}'
            for name, n in sorted(per_task.items())
        )
        new_assign[nid] = f"[{items}]"
    summary = {
        name: {
            "desired": desired[name],
            "placed": result.placed(name),
            "unplaced": result.unplaced.get(name, 0),
        }
        for name in desired
    }
    return new_assign, summary


def _current(tasks: list[TaskRecord], cursor: str | None) -> str | None:
    """Sequential mode: the task that runs now."""
    by_name = {t.spec.name: t for t in tasks}
    if cursor and cursor in by_name and not by_name[cursor].finished:
        return cursor
    for t in tasks:
        if not t.finished:
            return t.spec.name
    return None


def _slug(hostname: str) -> str:
    s = re.sub(r"[^a-z0-9-]+", "-", hostname.lower()).strip("-")[:40].strip("-")
    return s or "node"
