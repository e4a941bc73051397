"""Checks of tasks and queues: somebody listens, results are written, dead letters, the
instances the nodes report, and jobs waiting in queues no task reads.

Rates need two looks: ``snapshot`` reads a queue's figures, the runner waits a short
window, takes a second snapshot and ``evaluate`` compares the two.
"""

from __future__ import annotations

import difflib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gridq import protocol
from gridq.doctor.checks import Check, fail, ok, warn
from gridq.doctor.placement import runtime_mismatch
from gridq.keys import PREFIX, QueueKeys, queue_of
from gridq.queue import Queue
from gridq.redisurl import parse_multi

IDLE_AFTER = 60.0  # seconds without a claim while jobs wait: nobody listens
SCAN_LIMIT = 20_000  # keys looked at when hunting for unread queues


@dataclass
class TaskInfo:
    """What doctor needs to know of a task; built from the hub's task JSON or a spec.

    URLs may be masked (from GET /api/tasks): they still name host, port and db.
    """

    name: str
    input_redis: str
    input_queue: str
    output_redis: str = ""
    output_queue: str = ""
    image: str | None = None
    images: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None
    kind: str = "worker"
    status: str = "active"
    desired: int | None = None
    placed: int | None = None
    running: int | None = None

    @property
    def out_redis(self) -> str:
        return self.output_redis or self.input_redis

    def mismatch(self, nodes: list[dict[str, Any]] | None) -> tuple[str, str] | None:
        """(why, fix) when no online node's runtime can run this task."""
        if nodes is None:
            return None
        run = {"image": self.image, "images": self.images, "command": self.command}
        return runtime_mismatch({**run, "kind": self.kind}, nodes)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskInfo:
        spec = d.get("spec", d)  # a stored TaskRecord or a TaskOut / TaskSpec
        inst = d.get("instances") or {}
        status = d.get("status") or ("paused" if d.get("paused") else "active")
        return cls(
            name=str(spec.get("name", "")),
            input_redis=str(spec.get("input_redis") or ""),
            input_queue=str(spec.get("input_queue") or ""),
            output_redis=str(spec.get("output_redis") or ""),
            output_queue=str(spec.get("output_queue") or ""),
            image=spec.get("image"),
            images=dict(spec.get("images") or {}),
            command=spec.get("command"),
            kind=str(spec.get("kind") or "worker"),
            status=str(status),
            desired=inst.get("desired"),
            placed=inst.get("placed"),
            running=inst.get("running"),
        )


def redis_identity(url: str) -> tuple[str, int, int]:
    """(host, port, db) of a Redis URL, masked or not: two URLs naming the same Redis match."""
    multi = parse_multi(url)
    if multi:
        return (",".join(sorted(f"{h}:{p}" for h, p in multi.hosts)).lower(), 0, multi.db)
    p = urlsplit(url)
    db = 0
    path = p.path.strip("/")
    if path.isdigit():
        db = int(path)
    return ((p.hostname or p.path or "").lower(), p.port or 6379, db)


@dataclass
class Snapshot:
    at: float
    stats: dict[str, Any]
    output_len: int | None
    output_listened: bool


def snapshot(task: TaskInfo, conn_in: Any, conn_out: Any | None) -> Snapshot:
    stats = Queue(conn_in, task.input_queue).stats()
    out_len: int | None = None
    listened = False
    if task.output_queue and conn_out is not None:
        ok_keys = QueueKeys(task.output_queue)
        out_len = int(conn_out.llen(ok_keys.pending))
        # Results consumed by another gridq task (a pipeline) leave the list empty too.
        listened = (
            bool(conn_out.zcard(ok_keys.consumers)) or conn_out.get(ok_keys.last_claim) is not None
        )
    return Snapshot(time.time(), stats, out_len, listened)


def evaluate(
    task: TaskInfo,
    first: Snapshot,
    second: Snapshot | None,
    nodes: list[dict[str, Any]] | None = None,
    dead_records: list[dict[str, Any]] | None = None,
) -> list[Check]:
    now = second or first
    target = f"task {task.name}"
    out = [_listening(task, now, target, nodes), _output(task, first, second, target)]
    out.append(_dead(task, first, second, dead_records or [], target))
    if task.desired is not None:
        out.append(_placement(task, target, nodes))
    if nodes is not None:
        out.append(_instances(task, nodes, target))
    return out


def _listening(
    task: TaskInfo, snap: Snapshot, target: str, nodes: list[dict[str, Any]] | None = None
) -> Check:
    s = snap.stats
    depth = int(s.get("depth") or 0)
    last = s.get("last_claim")
    q = task.input_queue
    if task.status in ("paused", "finished", "waiting"):
        return ok("task.listening", f"task is {task.status}; {depth} jobs wait in {q!r}", target)
    if depth == 0:
        return ok("task.listening", f"queue {q!r} is empty", target)
    idle = None if last is None else max(0.0, snap.at - float(last))
    if idle is not None and idle < IDLE_AFTER:
        return ok(
            "task.listening", f"{depth} jobs wait in {q!r}; last claim {idle:.0f} s ago", target
        )
    if int(s.get("in_flight") or 0) > 0:
        return warn(
            "task.listening",
            f"{depth} jobs wait in {q!r} and no new claim for {idle:.0f} s while {s.get('in_flight')} jobs run",
            "Long jobs hold every worker: add replicas or concurrency, or set a job timeout.",
            target,
        )
    since = (
        "no worker has ever claimed a job"
        if idle is None
        else f"no worker has claimed a job for {idle:.0f} s"
    )
    saw = f"{depth} jobs wait in {q!r} and {since}: nobody listens"
    mismatch = task.mismatch(nodes)
    if mismatch and not task.placed:
        saw, fix = f"{saw}: {mismatch[0]}", mismatch[1]
    elif task.desired is not None and task.desired > 0 and not task.placed:
        fix = "No node matches the task's constraints or has a free slot: add a matching node or relax the constraints (gridq status shows the nodes)."
    elif task.running:
        fix = f"The {task.running} running instances read another queue: make the producer's queue name and the task's input_queue ({q!r}) the same."
    elif task.desired == 0:
        fix = "The task has 0 replicas: scale it up (gridq task scale) or point the producer at another task's queue."
    else:
        fix = f"Wrong queue name or no node matches the constraints: check the producer pushes to {q!r} and that workers run (gridq status)."
    return fail("task.listening", saw, fix, target)


def _output(task: TaskInfo, first: Snapshot, second: Snapshot | None, target: str) -> Check:
    if not task.output_queue:
        return ok("task.output", "no output queue declared: results are discarded", target)
    if first.output_len is None:
        return warn(
            "task.output",
            "the output queue's Redis could not be read",
            "Make the output Redis reachable (see the Redis checks).",
            target,
        )
    if second is None or second.output_len is None:
        return ok(
            "task.output", f"{first.output_len} results wait in {task.output_queue!r}", target
        )
    done = int(second.stats.get("processed") or 0) - int(first.stats.get("processed") or 0)
    window = second.at - first.at
    if done <= 0:
        return ok(
            "task.output",
            f"{second.output_len} results in {task.output_queue!r}; no job finished in the {window:.1f} s sample",
            target,
        )
    if (
        first.output_len == 0
        and second.output_len == 0
        and not (first.output_listened or second.output_listened)
    ):
        return fail(
            "task.output",
            f"{done} jobs finished in {window:.1f} s but the output queue {task.output_queue!r} stays empty",
            "The handler writes no results: return a value from it (None writes nothing), or clear the task's output_queue if none is expected.",
            target,
        )
    return ok(
        "task.output",
        f"{done} jobs finished in {window:.1f} s; results reach {task.output_queue!r}",
        target,
    )


def top_reasons(records: list[dict[str, Any]], n: int = 3) -> list[tuple[str, int]]:
    reasons: Counter[str] = Counter()
    for r in records:
        kind = str(r.get("error_type") or r.get("reason") or "error")
        msg = str(r.get("error") or "").strip().splitlines()
        reasons[f"{kind}: {msg[0][:120]}" if msg else kind] += 1
    return reasons.most_common(n)


def _dead(
    task: TaskInfo,
    first: Snapshot,
    second: Snapshot | None,
    records: list[dict[str, Any]],
    target: str,
) -> Check:
    now = second or first
    dead = int(now.stats.get("dead") or 0)
    if dead == 0:
        return ok("task.dead-letters", "no dead jobs", target)
    growing = second is not None and dead > int(first.stats.get("dead") or 0)
    reasons = "; ".join(f"{why} (x{n})" for why, n in top_reasons(records)) or "no readable records"
    saw = f"{dead} dead jobs{' and growing' if growing else ''}; top reasons: {reasons}"
    fix = f"Fix the handler for these errors, then requeue with `gridq dlq retry {task.input_queue}` (or drop them with `gridq dlq purge`)."
    return (
        fail("task.dead-letters", saw, fix, target)
        if growing
        else warn("task.dead-letters", saw, fix, target)
    )


def _placement(task: TaskInfo, target: str, nodes: list[dict[str, Any]] | None = None) -> Check:
    desired, placed, running = task.desired or 0, task.placed or 0, task.running or 0
    saw = f"{desired} wanted, {placed} placed on nodes, {running} running"
    mismatch = task.mismatch(nodes)
    if placed < desired and mismatch:
        # A warning like any shortfall; task.listening fails once jobs wait for it.
        return warn("task.placement", f"{saw}: {mismatch[0]}", mismatch[1], target)
    if placed < desired:
        return warn(
            "task.placement",
            saw + ": no node with a free slot matches the task",
            "Add nodes that match the task's constraints (arch, labels), raise GRIDQ_NODE_PARALLELISM, or lower replicas.",
            target,
        )
    return ok("task.placement", saw, target)


def _instance_fix(errors: str, codes: set[int]) -> str:
    low = errors.lower()
    if "exec format" in low:
        return "Build the image for the node's architecture (or give `images` per platform) so the binary matches the CPU."
    if 137 in codes or "oom" in low:
        return "Give the task more memory (resources.memory_mb or GRIDQ_NODE_CONTAINER_MEMORY) or make the handler use less."
    if 77 in codes or "noauth" in low or "wrongpass" in low or "password" in low:
        return "Make the task's Redis URL carry the password Redis uses (see the Redis credentials check)."
    if 78 in codes or "unreachable" in low or "resolve" in low:
        return "Make the task's Redis reachable from the worker containers (see the node network check)."
    return "Read the instance's logs (docker logs or the node's log), fix the worker's start-up, then let the node restart it."


def _instances(task: TaskInfo, nodes: list[dict[str, Any]], target: str) -> Check:
    bad: list[str] = []
    codes: set[int] = set()
    seen = 0
    for node in nodes:
        for inst in node.get("instances") or []:
            if inst.get("task") != task.name:
                continue
            seen += 1
            state = str(inst.get("state") or "")
            code = inst.get("exit_code")
            err = str(inst.get("error") or "")
            restarts = int(inst.get("restarts") or 0)
            if (
                state in ("crashloop", "failed")
                or code == 137
                or "oom" in err.lower()
                or restarts >= 3
            ):
                if isinstance(code, int):
                    codes.add(code)
                what = err or (f"exit code {code}" if code is not None else state)
                bad.append(
                    f"{inst.get('instance_id', '?')} on {node.get('hostname') or node.get('node_id')}: {state}, {restarts} restarts, {what}"
                )
    if not bad:
        return ok(
            "task.instances", f"{seen} instances reported, none crash-looping or OOM-killed", target
        )
    saw = (
        f"{len(bad)} of {seen} instances failing: "
        + "; ".join(bad[:3])
        + ("; ..." if len(bad) > 3 else "")
    )
    return fail("task.instances", saw, _instance_fix(saw, codes), target)


# --- queues no task reads ------------------------------------------------------------


def _decode(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def bare_lists(conn: Any, limit: int = SCAN_LIMIT) -> list[str]:
    """List keys outside the gridq: prefix (queues are bare names); bounded scan."""
    out: list[str] = []
    try:
        for n, key in enumerate(conn.scan_iter(count=1000, _type="list")):
            if n >= limit:
                break
            name = _decode(key)
            if not name.startswith(f"{PREFIX}:"):
                out.append(name)
    except Exception:  # SCAN TYPE needs Redis 6.0
        pass
    return out


def gridq_queue_names(conn: Any, lists: list[str], limit: int = SCAN_LIMIT) -> set[str]:
    """Queues this Redis holds gridq state for (stats, claims, dead letters, ...), plus
    bare lists whose oldest item is a gridq envelope."""
    names: set[str] = set()
    for n, key in enumerate(conn.scan_iter(match=f"{PREFIX}:q:*", count=1000)):
        if n >= limit:
            break
        name = queue_of(_decode(key))
        if name:
            names.add(name)
    for name in lists:
        oldest = conn.lindex(name, -1)
        if oldest is not None and protocol._looks_like_envelope(oldest):
            names.add(name)
    return names


def _near(name: str, queues: set[str]) -> bool:
    """A misspelling of one of ``queues``: same but for case, or nearly the same."""
    low = name.lower()
    return any(
        low == q.lower() or difflib.SequenceMatcher(None, low, q.lower()).ratio() >= 0.85
        for q in queues
    )


def queue_depth(conn: Any, name: str) -> int:
    k = QueueKeys(name)
    pipe = conn.pipeline(transaction=False)
    pipe.llen(k.pending)
    for level in range(1, protocol.MAX_PRIORITY + 1):
        pipe.llen(k.priority(level))
    pipe.zcard(k.delayed)
    return sum(int(x) for x in pipe.execute())


def check_unread_queues(conn: Any, read: set[str], written: set[str], target: str) -> list[Check]:
    """Jobs waiting in a queue that no registered task reads (``read``: the input queues
    of the tasks on this Redis; ``written``: their output queues, read by users)."""
    out: list[Check] = []
    lists = bare_lists(conn)
    candidates = gridq_queue_names(conn, lists)
    # A raw LPUSH to a misspelt name leaves no gridq key: look at near-misses too.
    candidates |= {n for n in lists if _near(n, read)}
    for name in sorted(candidates - read - written):
        depth = queue_depth(conn, name)
        if depth == 0:
            continue
        close = difflib.get_close_matches(name, sorted(read), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        out.append(
            fail(
                "queue.unread",
                f"{depth} jobs wait in queue {name!r} but no registered task reads it",
                f"Push to a task's input_queue{hint} or register a task that reads {name!r}.",
                target,
            )
        )
    if not out:
        out.append(
            ok(
                "queue.unread",
                f"every queue with jobs is read by a task ({len(read)} task queues)",
                target,
            )
        )
    return out
