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

One module per concept, combined into ``Store``; every key is named in gridq/keys.py:

- base.py: the connection (pool, registered scripts); scripts.py: the Lua scripts
- events.py: the event log; tasks.py: task records; specs.py: a task as nodes and the
  scheduler see it; figures.py: live queue figures and rates
- nodes.py: register, authenticate, heartbeat, leave, stop, delete;
  node_views.py: nodes read back with their status
- scheduling.py: scheduling passes, the lock, sequential mode
"""

from __future__ import annotations

from .node_views import NodeView
from .nodes import NODE_ID_RE, NodeAuthError, NodeGone, NodeStore, secret_hash
from .scheduling import Coalescer, Scheduler
from .specs import CELERY_COMMAND, celery_queues, demand_of, spec_hash_of, worker_spec

__all__ = [
    "CELERY_COMMAND",
    "NODE_ID_RE",
    "Coalescer",
    "NodeAuthError",
    "NodeGone",
    "NodeView",
    "Store",
    "celery_queues",
    "demand_of",
    "secret_hash",
    "spec_hash_of",
    "worker_spec",
]


class Store(NodeStore, Scheduler):
    """All of the hub's state in Redis: one object per hub, shared by every request."""
