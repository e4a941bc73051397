"""The agent's own /metrics (Prometheus text) and /health (JSON), on a small thread server.

Its own registry: the agent never exports the process-global default registry, so that
tests running several agents in one interpreter do not collide.
"""

from __future__ import annotations

import logging

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

log = logging.getLogger("gridq.node")

STATES = ("starting", "running", "exited", "crashloop", "stopping", "failed")


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.instances = Gauge(
            "gridq_node_instances", "Worker instances by state", ["state"], registry=self.registry
        )
        self.restarts = Counter(
            "gridq_node_restarts",
            "Worker restarts after an exit or failed start",
            ["task"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "gridq_node_reconcile_seconds",
            "Duration of one reconcile pass",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.runtime_errors = Counter(
            "gridq_node_runtime_errors",
            "Failed Docker API (or process) operations",
            ["op"],
            registry=self.registry,
        )
        self.hub_up = Gauge(
            "gridq_node_hub_up", "1 when the last heartbeat reached the hub", registry=self.registry
        )
        self.heartbeats = Counter(
            "gridq_node_heartbeats", "Heartbeats by outcome", ["outcome"], registry=self.registry
        )
        for s in STATES:
            self.instances.labels(s).set(0)

    def set_states(self, counts: dict[str, int]) -> None:
        for s in STATES:
            self.instances.labels(s).set(counts.get(s, 0))
