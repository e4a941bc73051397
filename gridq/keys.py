"""Every Redis key gridq reads or writes, named in one place.

The input queue itself is the bare queue name, so that any producer can enqueue
with a plain ``LPUSH queue item`` (IDM-GridCore's convention). Everything gridq
adds lives under the ``gridq:`` prefix. docs/protocol.md lists the same keys; a
test keeps the two in step.
"""

from __future__ import annotations

PREFIX = "gridq"


class QueueKeys:
    """Keys that belong to one queue."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not name:
            raise ValueError("queue name must not be empty")
        self.name = name

    @property
    def pending(self) -> str:
        """LIST: jobs waiting. Producers LPUSH, workers take from the right (FIFO)."""
        return self.name

    def priority(self, level: int) -> str:
        """LIST: jobs waiting at priority ``level`` (1..9; higher runs first)."""
        return f"{PREFIX}:q:{self.name}:p{level}"

    @property
    def delayed(self) -> str:
        """ZSET: jobs waiting for a retry or an ETA; score = unix time when due."""
        return f"{PREFIX}:q:{self.name}:delayed"

    @property
    def dead(self) -> str:
        """LIST: dead-letter records (JSON), newest at the head."""
        return f"{PREFIX}:q:{self.name}:dead"

    @property
    def stats(self) -> str:
        """HASH: counters processed, failed, retried, dead (monotonic)."""
        return f"{PREFIX}:q:{self.name}:stats"

    @property
    def consumers(self) -> str:
        """ZSET: consumer ids reading this queue; score = last heartbeat (unix time)."""
        return f"{PREFIX}:q:{self.name}:consumers"

    def inflight(self, consumer_id: str) -> str:
        """LIST: jobs claimed by one consumer and not yet acknowledged."""
        return f"{PREFIX}:q:{self.name}:inflight:{consumer_id}"

    @property
    def last_claim(self) -> str:
        """STRING: unix time of the most recent claim by any consumer (doctor's 'nobody listens')."""
        return f"{PREFIX}:q:{self.name}:last_claim"

    @property
    def paused(self) -> str:
        """STRING: present while the queue is paused; workers stop claiming."""
        return f"{PREFIX}:q:{self.name}:paused"


def consumer_alive(consumer_id: str) -> str:
    """STRING with TTL = lease: present while the consumer lives (renewed by its heartbeat)."""
    return f"{PREFIX}:consumer:{consumer_id}:alive"


# --- hub state -------------------------------------------------------------------------

HUB_TASKS = f"{PREFIX}:hub:tasks"  # HASH name -> task spec JSON
HUB_TASK_ORDER = f"{PREFIX}:hub:task_order"  # ZSET name -> registration sequence
HUB_TASK_SEQ = f"{PREFIX}:hub:task_seq"  # STRING counter for HUB_TASK_ORDER
HUB_NODES = f"{PREFIX}:hub:nodes"  # HASH node_id -> node record JSON
HUB_NODE_SEEN = f"{PREFIX}:hub:node_seen"  # ZSET node_id -> last heartbeat (unix time)
HUB_NODE_META = f"{PREFIX}:hub:node_meta"  # HASH node_id -> registration record JSON (stop, left)
HUB_NODE_CAPS = (
    f"{PREFIX}:hub:node_caps"  # HASH node_id -> {info, draining} JSON (scheduling input)
)
HUB_NODES_DELETED = f"{PREFIX}:hub:nodes_deleted"  # SET of node ids deleted (410 on heartbeat)
HUB_ASSIGNMENTS = f"{PREFIX}:hub:assignments"  # HASH node_id -> assignment JSON
HUB_SCHEDULE_LOCK = f"{PREFIX}:hub:schedule_lock"  # STRING lock around a scheduling pass
HUB_STATE = f"{PREFIX}:hub:state"  # HASH misc: spec version, sequential cursor
HUB_EVENTS = f"{PREFIX}:hub:events"  # LIST recent events (capped)
# The web dashboard (hub/ui): chart history written by one hub replica per interval.
HUB_UI_LATEST = f"{PREFIX}:hub:ui:latest"  # HASH task name -> last sampled figures JSON
HUB_UI_TOTALS = f"{PREFIX}:hub:ui:totals"  # LIST grid-wide samples, newest first (capped)


def hub_ui_history(name: str) -> str:
    """LIST: one task's samples (time, counters, depth), newest first, capped (>= 1 h)."""
    return f"{PREFIX}:hub:ui:history:{name}"


def hub_ui_sample_slot(slot: int) -> str:
    """STRING, SET NX with a TTL: the replica that set it samples this interval."""
    return f"{PREFIX}:hub:ui:slot:{slot}"


def hub_ui_session(digest: str) -> str:
    """HASH with TTL = session lifetime: role and CSRF token of one dashboard login,
    keyed by the SHA-256 of the cookie (the cookie itself is never stored)."""
    return f"{PREFIX}:hub:ui:session:{digest}"


def hub_node_secret(node_id: str) -> str:
    """STRING: sha256 of the node's secret (never the secret itself)."""
    return f"{PREFIX}:hub:node:{node_id}:secret"


def hub_task_rate(name: str) -> str:
    """LIST: recent (time, processed) samples used to compute a task's rate."""
    return f"{PREFIX}:hub:task:{name}:rate"


def all_documented() -> list[str]:
    """Key patterns as docs/protocol.md writes them (``{queue}`` and ``{id}`` placeholders)."""
    q = QueueKeys("{queue}")
    return [
        q.pending,
        q.priority(1).replace("p1", "p{level}"),
        q.delayed,
        q.dead,
        q.stats,
        q.consumers,
        q.inflight("{consumer}"),
        q.last_claim,
        q.paused,
        consumer_alive("{consumer}"),
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
        hub_node_secret("{id}"),
        hub_task_rate("{name}"),
        HUB_UI_LATEST,
        HUB_UI_TOTALS,
        hub_ui_history("{name}"),
        hub_ui_sample_slot(0).replace(":0", ":{slot}"),
        hub_ui_session("{digest}"),
    ]
