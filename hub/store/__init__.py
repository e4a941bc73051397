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

``Store`` composes sub-stores over one connection; every key is named in gridq/keys.py:

- ``store.tasks`` (tasks.py): task records
- ``store.nodes`` (nodes.py, node_views.py): register, authenticate, heartbeat, leave,
  stop, delete; nodes read back with their status
- ``store.figures`` (figures.py): live queue figures and rates from the tasks' Redis
- ``store.events`` (events.py): the event log
- ``store.schedules`` (schedules.py, schedule_push.py): schedules, their tick claims
  and the idempotent push to the task's queue (docs/schedules.md)
- ``store.audit`` (audit.py): the audit trail (who changed what through the API)
- ``store.scheduling`` (placement_pass.py): the scheduling service over the four:
  passes (steps in pass_steps.py), the lock (lock.py), sequential mode

base.py: the connection; scripts.py: the Lua scripts; specs.py: a task as nodes and
the scheduler see it.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from ..config import HubSettings
from .audit import Audit
from .base import connect
from .events import Events
from .figures import Figures
from .node_views import NodeView, counts
from .nodes import NODE_ID_RE, NodeAuthError, NodeGone, Nodes, secret_hash
from .placement_pass import SchedulingService
from .schedules import Schedules
from .specs import CELERY_COMMAND, celery_queues, demand_of, spec_hash_of, worker_spec
from .tasks import Tasks

__all__ = [
    "CELERY_COMMAND",
    "NODE_ID_RE",
    "NodeAuthError",
    "NodeGone",
    "NodeView",
    "Nodes",
    "SchedulingService",
    "Store",
    "celery_queues",
    "counts",
    "demand_of",
    "secret_hash",
    "spec_hash_of",
    "worker_spec",
]


class Store:
    """All of the hub's state in Redis: one object per hub, shared by every request."""

    def __init__(self, settings: HubSettings, conn: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.r = conn or connect(settings)
        self.events = Events(self.r)
        self.audit = Audit(self.r, settings)
        self.tasks = Tasks(self.r)
        self.figures = Figures(self.r, settings)
        self.nodes = Nodes(self.r, settings, self.events)
        self.schedules = Schedules(self.r, settings, self.tasks)
        self.scheduling = SchedulingService(
            self.r,
            settings,
            tasks=self.tasks,
            nodes=self.nodes,
            figures=self.figures,
            events=self.events,
        )

    async def ping(self) -> None:
        await self.r.ping()

    async def close(self) -> None:
        await self.r.aclose()
        self.figures.close()
        self.schedules.close()
