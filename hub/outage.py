"""The hub's own Redis outages: one log line when one starts, one when it ends, and no
node blamed for it.

While its Redis is unreachable the hub answers 503 and cannot record heartbeats, so
every node's ``last_seen`` goes stale through no fault of the node. Judged on that
alone, the first scheduling pass after the outage would declare every node offline and
take its workers away (the node then stops them and starts new ones a moment later).
So each connection failure moves ``store.nodes.listening_since`` to now, and a node is
offline only after ``offline_after`` seconds of silence the hub could have heard
(hub/store/node_views.py). Nodes retry a failed heartbeat within two intervals
(node/agent.py), well inside the three intervals of ``offline_after``.

Every replica sees the outage in its own periodic loop, so each keeps its own
``listening_since``; nothing about it needs to be stored.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from gridq.durability import TRANSIENT
from gridq.outage import OutageLog

log = logging.getLogger("gridq.hub")

# Redis gone, restarting or still loading its data (BusyLoadingError is a ConnectionError),
# or mid-failover (READONLY from a demoted master, CLUSTERDOWN, TRYAGAIN): gridq/durability.py.
OUTAGE_ERRORS = TRANSIENT


class _Listener(Protocol):
    listening_since: float


class RedisOutage:
    def __init__(self, store: _Listener, offline_after: float) -> None:
        self.store = store
        self.offline_after = offline_after
        self.log = OutageLog(
            log,
            up_message=f"hub Redis reachable again after %.1f s; nodes have {offline_after:g} s "
            "to heartbeat before any is declared offline",
        )

    def failed(self, exc: BaseException) -> bool:
        """Note a failure; True if it is an outage (logged once per outage)."""
        if not isinstance(exc, OUTAGE_ERRORS):
            return False
        self.store.listening_since = time.time()
        what = (str(exc) or type(exc).__name__).rstrip(".")
        self.log.down(
            f"hub Redis unreachable: {what}; answering 503 and retrying, workers keep running"
        )
        return True

    def ok(self) -> None:
        """A Redis round trip succeeded (the periodic pass): end the outage, if any."""
        self.log.up()
