"""Every Redis key gridq reads or writes, named in one place.

The input queue itself is the bare queue name, so that any producer can enqueue
with a plain ``LPUSH queue item`` (IDM-GridCore's convention). Everything gridq
adds lives under the ``gridq:`` prefix. docs/protocol.md lists the same keys; a
test keeps the two in step.

Layout 2 (gridq 0.2.0) is Redis Cluster ready: every key of one queue carries the
queue name as a hash tag (``gridq:q:{NAME}:...``), and Redis hashes only what is
between the braces, so all of them share the slot of the bare list ``NAME``. One Lua
script may then touch any of them. That is why a queue name may not contain braces:
the bare list's slot would no longer be the tag's. Hub state shares the tag ``{hub}``.
gridq/migrate.py moves the keys of layout 1 (0.1.0) here.
"""

from __future__ import annotations

PREFIX = "gridq"
LAYOUT = 2  # docs/protocol.md "Key layout versions"


def check_queue_name(name: str) -> str:
    """``name`` if it can name a queue; ValueError saying why not."""
    if not name:
        raise ValueError("queue name must not be empty")
    if "{" in name or "}" in name:
        raise ValueError(
            f"queue name {name!r} contains '{{' or '}}': Redis Cluster would hash only part "
            "of it, so the queue list and gridq's keys for it could land in different slots"
        )
    return name


class QueueKeys:
    """Keys that belong to one queue."""

    __slots__ = ("name", "_base")

    def __init__(self, name: str) -> None:
        self.name = check_queue_name(name)
        self._base = f"{PREFIX}:q:{{{name}}}"

    @property
    def pending(self) -> str:
        """LIST: jobs waiting. Producers LPUSH, workers take from the right (FIFO)."""
        return self.name

    def priority(self, level: int) -> str:
        """LIST: jobs waiting at priority ``level`` (1..9; higher runs first)."""
        return f"{self._base}:p{level}"

    @property
    def delayed(self) -> str:
        """ZSET: jobs waiting for a retry or an ETA; score = unix time when due."""
        return f"{self._base}:delayed"

    @property
    def dead(self) -> str:
        """LIST: dead-letter records (JSON), newest at the head."""
        return f"{self._base}:dead"

    @property
    def stats(self) -> str:
        """HASH: counters processed, failed, retried, dead (monotonic)."""
        return f"{self._base}:stats"

    @property
    def consumers(self) -> str:
        """ZSET: consumer ids reading this queue; score = last heartbeat (unix time)."""
        return f"{self._base}:consumers"

    def inflight(self, consumer_id: str) -> str:
        """LIST: jobs claimed by one consumer and not yet acknowledged."""
        return f"{self._base}:inflight:{consumer_id}"

    @property
    def last_claim(self) -> str:
        """STRING: unix time of the most recent claim by any consumer (doctor's 'nobody listens')."""
        return f"{self._base}:last_claim"

    @property
    def paused(self) -> str:
        """STRING: present while the queue is paused; workers stop claiming."""
        return f"{self._base}:paused"

    def alive(self, consumer_id: str) -> str:
        """STRING with TTL = lease: present while the consumer lives (renewed by its heartbeat)."""
        return f"{self._base}:alive:{consumer_id}"

    def scheduled(self, job_id: str) -> str:
        """STRING with TTL: a schedule's job ``job_id`` was pushed here (pushed once)."""
        return f"{self._base}:sched:{job_id}"

    def job(self, job_id: str) -> str:
        """HASH with TTL: one job's record (status, attempts, times, result, error)."""
        return f"{self._base}:job:{job_id}"

    def done(self, job_id: str) -> str:
        """LIST with TTL: pushed once when the job finishes; JobHandle.get() blocks on it."""
        return f"{self._base}:done:{job_id}"

    def unique(self, key: str) -> str:
        """STRING: id of the job holding the unique key ``key`` (enqueue(key=...))."""
        return f"{self._base}:unique:{key}"

    @property
    def running(self) -> str:
        """HASH: job id -> "started_at consumer" for claimed jobs that keep a record."""
        return f"{self._base}:running"

    @property
    def cancelled(self) -> str:
        """SET: ids of cancelled jobs not yet dropped by a claim (they never start)."""
        return f"{self._base}:cancelled"

    @property
    def kill(self) -> str:
        """SET: ids of running jobs whose cancel a worker still has to carry out."""
        return f"{self._base}:kill"

    @property
    def waiting(self) -> str:
        """ZSET: job id -> unix time until which a JobHandle.get() waits for it (the
        settle wakes only these; stale entries are dropped by the next get())."""
        return f"{self._base}:waiting"

    def rate(self, task: str) -> str:
        """HASH: a rate-limited task's schedule (tat: next start allowed; horizon: next
        free slot for a parked job), shared by every worker of the queue."""
        return f"{self._base}:rate:{task}"

    def slots(self, task: str) -> str:
        """ZSET: job id -> lease expiry, one per running job of a concurrency-limited task."""
        return f"{self._base}:slots:{task}"

    def wf(self, stage: str) -> str:
        """HASH with TTL: a workflow barrier (n members, mode, what to fire, ``fired``)."""
        return f"{self._base}:wf:{stage}"

    def wf_done(self, stage: str) -> str:
        """SET with TTL: indexes of a barrier's members that finished (counted once)."""
        return f"{self._base}:wf:{stage}:done"

    def wf_results(self, stage: str) -> str:
        """HASH with TTL: member index -> its result (JSON) or Failure marker."""
        return f"{self._base}:wf:{stage}:results"

    @property
    def tagged_prefix(self) -> str:
        """Start of every gridq key of this queue (for SCAN MATCH; escape it first)."""
        return f"{self._base}:"


def queue_of(key: str) -> str | None:
    """The queue a layout-2 per-queue key belongs to (``gridq:q:{NAME}:...``), else None."""
    head = f"{PREFIX}:q:{{"
    if not key.startswith(head):
        return None
    name, sep, _ = key[len(head) :].partition("}:")
    return name if sep and name else None


# --- hub state -------------------------------------------------------------------------
# One hash tag for all of it: the hub's scripts and MULTI pipelines mix these keys.
HUB = f"{PREFIX}:{{hub}}"

HUB_TASKS = f"{HUB}:tasks"  # HASH name -> task spec JSON
HUB_TASK_ORDER = f"{HUB}:task_order"  # ZSET name -> registration sequence
HUB_TASK_SEQ = f"{HUB}:task_seq"  # STRING counter for HUB_TASK_ORDER
HUB_NODES = f"{HUB}:nodes"  # HASH node_id -> node record JSON
HUB_NODE_SEEN = f"{HUB}:node_seen"  # ZSET node_id -> last heartbeat (unix time)
HUB_NODE_META = f"{HUB}:node_meta"  # HASH node_id -> registration record JSON (stop, left)
HUB_NODE_CAPS = f"{HUB}:node_caps"  # HASH node_id -> {info, draining} JSON (scheduling input)
HUB_NODES_DELETED = f"{HUB}:nodes_deleted"  # SET of node ids deleted (410 on heartbeat)
HUB_ASSIGNMENTS = f"{HUB}:assignments"  # HASH node_id -> assignment JSON
HUB_SCHEDULE_LOCK = f"{HUB}:schedule_lock"  # STRING lock around a scheduling pass
HUB_STATE = f"{HUB}:state"  # HASH misc: spec version, sequential cursor
HUB_EVENTS = f"{HUB}:events"  # LIST recent events (capped)
HUB_LEADER = f"{HUB}:leader"  # STRING "epoch:replica" with TTL: the leader's lease
HUB_LEADER_INFO = f"{HUB}:leader_info"  # HASH epoch, holder, since, renewed, misfire_before
HUB_SCHEDULES = f"{HUB}:schedules"  # HASH name -> schedule JSON
HUB_SCHEDULES_PENDING = f"{HUB}:schedules_pending"  # ZSET job id claimed, not yet pushed
HUB_AUDIT = f"{HUB}:audit"  # STREAM the audit trail (capped, kept 30 days by default)


def hub_node_secret(node_id: str) -> str:
    """STRING: sha256 of the node's secret (never the secret itself)."""
    return f"{HUB}:node:{node_id}:secret"


def hub_auth_failures(address: str) -> str:
    """STRING counter with TTL = the window: failed authentications from one client address."""
    return f"{HUB}:authfail:{address}"


def hub_task_rate(name: str) -> str:
    """LIST: recent (time, processed) samples used to compute a task's rate."""
    return f"{HUB}:task:{name}:rate"


def hub_schedule_state(name: str) -> str:
    """HASH: a schedule's ticks: last_tick (claimed), last_run, last_job_id, runs, lag."""
    return f"{HUB}:schedule:{name}:state"


# The web dashboard (hub/ui): chart history written by one hub replica per interval.
HUB_UI_LATEST = f"{HUB}:ui:latest"  # HASH task name -> last sampled figures JSON
HUB_UI_TOTALS = f"{HUB}:ui:totals"  # LIST grid-wide samples, newest first (capped)


def hub_ui_history(name: str) -> str:
    """LIST: one task's samples (time, counters, depth), newest first, capped (>= 1 h)."""
    return f"{HUB}:ui:history:{name}"


def hub_ui_sample_slot(slot: int) -> str:
    """STRING, SET NX with a TTL: the replica that set it samples this interval."""
    return f"{HUB}:ui:slot:{slot}"


def hub_ui_session(digest: str) -> str:
    """HASH with TTL = session lifetime: role and CSRF token of one dashboard login,
    keyed by the SHA-256 of the cookie (the cookie itself is never stored)."""
    return f"{HUB}:ui:session:{digest}"


def all_documented() -> list[str]:
    """Key patterns as docs/protocol.md writes them (``<queue>``, ``<id>``... placeholders)."""
    q = QueueKeys("<queue>")
    return [
        q.pending,
        q.priority(1).replace(":p1", ":p<level>"),
        q.delayed,
        q.dead,
        q.stats,
        q.consumers,
        q.inflight("<consumer>"),
        q.last_claim,
        q.paused,
        q.alive("<consumer>"),
        q.scheduled("<job>"),
        q.job("<id>"),
        q.done("<id>"),
        q.unique("<key>"),
        q.running,
        q.cancelled,
        q.kill,
        q.waiting,
        q.rate("<task>"),
        q.slots("<task>"),
        q.wf("<wf>"),
        q.wf_done("<wf>"),
        q.wf_results("<wf>"),
        HUB_TASKS,
        HUB_TASK_ORDER,
        HUB_TASK_SEQ,
        HUB_NODES,
        HUB_NODE_SEEN,
        HUB_NODE_META,
        HUB_NODE_CAPS,
        HUB_NODES_DELETED,
        HUB_ASSIGNMENTS,
        HUB_SCHEDULE_LOCK,
        HUB_STATE,
        HUB_EVENTS,
        HUB_AUDIT,
        hub_node_secret("<id>"),
        hub_auth_failures("<address>"),
        hub_task_rate("<name>"),
        HUB_LEADER,
        HUB_LEADER_INFO,
        HUB_SCHEDULES,
        HUB_SCHEDULES_PENDING,
        hub_schedule_state("<name>"),
        HUB_UI_LATEST,
        HUB_UI_TOTALS,
        hub_ui_history("<name>"),
        hub_ui_sample_slot(0).replace(":0", ":<slot>"),
        hub_ui_session("<digest>"),
    ]
