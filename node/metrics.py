"""The agent's own /metrics (Prometheus text) and /health (JSON), on a small thread server.

Its own registry: the agent never exports the process-global default registry, so that
tests running several agents in one interpreter do not collide.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
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


class MetricsServer:
    def __init__(
        self, bind: str, metrics: NodeMetrics, health: Callable[[], dict[str, Any]]
    ) -> None:
        host, _, port = bind.rpartition(":")
        metrics_ref, health_ref = metrics, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] == "/metrics":
                    body = generate_latest(metrics_ref.registry)
                    ctype = CONTENT_TYPE_LATEST
                    code = 200
                elif self.path.split("?")[0] == "/health":
                    data = health_ref()
                    body = json.dumps(data).encode()
                    ctype = "application/json"
                    code = 200 if data.get("status") == "ok" else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would flood the agent's log

        self.server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="gridq-node-metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
