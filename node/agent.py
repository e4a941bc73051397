"""The node agent's main loop: heartbeat, reconcile, drain.

One thread runs the loop; runtime actions run on the reconciler's pool. The loop wakes
every heartbeat interval, when a worker dies (Docker event), when an action finishes and
when a restart backoff is due. While the hub is unreachable the workers keep running
with the last assignments (a hub restart must not stop the grid), and the outage is
logged once when it starts and once when it ends.

Stop: the hub's stop request or SIGTERM/SIGINT drains (every worker gets SIGTERM and the
stop timeout, then SIGKILL, then is removed), tells the hub (leave) and exits 0. A second
signal kills the workers at once and exits 1.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from gridq import __version__
from gridq.errors import EXIT_CONFIG
from gridq.metrics_http import MetricsServer
from gridq.node.client import HubClient, HubRejected, HubUnavailable
from gridq.node.config import NodeSettings
from gridq.node.identity import IdentityStore
from gridq.node.metrics import NodeMetrics
from gridq.node.reconcile import Reconciler
from gridq.node.runtime.base import Runtime
from gridq.nodeproto import Assignment, Heartbeat, NodeInfo
from gridq.outage import OutageLog
from gridq.redisurl import mask_text

log = logging.getLogger("gridq.node")

DEFAULT_INTERVAL = 5.0
# While the hub fails, heartbeats are retried every RETRY_FACTOR intervals: inside the
# hub's offline window (3 intervals, counted from when the hub itself could hear again:
# hub/outage.py), so an outage of the hub or of its Redis never gets this node declared
# offline and its workers replaced. Load on a failing hub stays below the normal rate.
RETRY_FACTOR = 2.0


def make_runtime(
    settings: NodeSettings, agent_id: str, metrics: NodeMetrics, wake: threading.Event
) -> Runtime:
    def on_error(op: str) -> None:
        metrics.runtime_errors.labels(op).inc()

    if settings.runtime == "docker":
        # Imported here: the process runtime must work where the docker SDK cannot connect.
        from gridq.node.runtime.docker_rt import DockerRuntime

        return DockerRuntime(settings, agent_id, on_event=wake.set, on_error=on_error)
    from gridq.node.runtime.process_rt import ProcessRuntime

    return ProcessRuntime(settings, agent_id, on_event=wake.set, on_error=on_error)


class Agent:
    def __init__(self, settings: NodeSettings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self.store = IdentityStore(settings.state_dir)
        self.store.ensure_dir()
        self.identity = self.store.load()
        self.metrics = NodeMetrics()
        self._wake = threading.Event()
        self.runtime = runtime or make_runtime(
            settings, self.identity.agent_id, self.metrics, self._wake
        )
        self.metrics_server: MetricsServer | None = None
        self.client = HubClient(
            settings.hub_urls,
            settings.token(),
            self.store,
            self.node_info,
            ca_file=settings.ca_file,
        )
        self.reconciler = Reconciler(self.runtime, settings, self.metrics, wake=self._wake.set)
        self.desired: list[Assignment] | None = None
        self.draining = threading.Event()
        self.killed = threading.Event()
        self._signals = 0
        self._hub_outage = OutageLog(
            log, up_level=logging.INFO, up_message="hub reachable again after %.0f s"
        )
        self._hub_failures = 0
        self._last_hb = 0.0
        self._registered_once = False
        self.exit_code: int | None = None

    # -- identity and info ------------------------------------------------------------

    def node_info(self) -> NodeInfo:
        cpus, mem = self.runtime.info()
        metrics_url = None
        if self.metrics_server is not None:
            metrics_url = f"http://{self.advertise_host()}:{self.metrics_server.port}/metrics"
        return NodeInfo(
            hostname=(self.settings.name or socket.gethostname())[:253],
            arch=self.runtime.platform,
            cpus=max(1, cpus),
            memory_mb=max(0, mem),
            labels=self.settings.labels,
            runtime=self.settings.runtime,
            parallelism=self.settings.slots,
            container_memory_mb=self.settings.container_memory,
            version=__version__,
            metrics_url=metrics_url,
        )

    def advertise_host(self) -> str:
        if self.settings.advertise_host:
            return self.settings.advertise_host
        # The address this machine uses toward the hub is the one the hub can reach.
        try:
            parts = urlsplit(self.client.base)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((parts.hostname or "127.0.0.1", parts.port or 80))
                return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"

    @property
    def node_id(self) -> str | None:
        return self.client.node_id

    # -- signals ----------------------------------------------------------------------

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only flags here: Docker calls from a signal handler could deadlock on a lock
        # the interrupted main thread holds.
        self.request_stop(force=self._signals >= 1)
        self._signals += 1

    def request_stop(self, force: bool = False) -> None:
        if force:
            self.killed.set()
        self.draining.set()
        self._wake.set()

    # -- main loop --------------------------------------------------------------------

    def interval(self) -> float:
        base = (
            self.settings.heartbeat_interval or self.client.heartbeat_interval or DEFAULT_INTERVAL
        )
        if self._hub_failures:
            return base * RETRY_FACTOR
        return base

    def _health_ok(self) -> tuple[bool, dict[str, Any]]:
        data = self.health()
        return data.get("status") == "ok", data

    def run(self) -> int:
        if self.settings.metrics_bind:
            host, _, port = self.settings.metrics_bind.rpartition(":")
            try:
                self.metrics_server = MetricsServer(
                    self.metrics.registry, self._health_ok, host, int(port), "gridq-node-metrics"
                )
            except (OSError, ValueError) as exc:
                log.error(
                    "cannot serve metrics on %s: %s (set GRIDQ_NODE_METRICS_BIND)",
                    self.settings.metrics_bind,
                    exc,
                )
                return EXIT_CONFIG
            self.metrics_server.start()
        log.info(
            "gridq node %s: runtime %s (%s), hub %s, state %s",
            __version__,
            self.runtime.name,
            self.runtime.platform,
            self.settings.hub_url,
            self.settings.state_dir,
        )
        try:
            while not self.draining.is_set():
                due_hb = time.monotonic() - self._last_hb >= self.interval()
                if due_hb and self._heartbeat() is False:
                    return self.exit_code if self.exit_code is not None else EXIT_CONFIG
                if self.desired is not None and not self.draining.is_set() and self.node_id:
                    self.reconciler.reconcile(self.desired, self.node_id)
                wait = self.interval() - (time.monotonic() - self._last_hb)
                due = self.reconciler.next_due()
                if due is not None:
                    wait = min(wait, due + 0.01)
                self._wake.wait(max(0.01, wait))
                self._wake.clear()
            return self._drain()
        finally:
            self.close()

    def _heartbeat(self, draining: bool = False) -> bool | None:
        """One heartbeat; False means give up (configuration problem)."""
        self._last_hb = time.monotonic()
        hb = Heartbeat(
            info=self.node_info(),
            instances=self.reconciler.statuses(),
            errors=self.reconciler.errors(),
            draining=draining,
        )
        try:
            resp = self.client.heartbeat(hb)
        except HubRejected as exc:
            self.metrics.heartbeats.labels("rejected").inc()
            self.metrics.hub_up.set(0)
            if not self._registered_once:
                log.error("%s", exc)
                self.exit_code = EXIT_CONFIG
                return False
            self._outage(str(exc))
            return None
        except HubUnavailable as exc:
            self.metrics.heartbeats.labels("unreachable").inc()
            self.metrics.hub_up.set(0)
            self._outage(str(exc))
            return None
        if not self._registered_once:
            self.reconciler.hold_until = time.monotonic() + max(1.0, 3 * self.interval())
        self._registered_once = True
        if self.client.answered_by_register:
            # Answered by the registration: reconcile (start workers) now, and report the
            # instances with a heartbeat right after instead of one interval later.
            self._last_hb = 0.0
        self.metrics.heartbeats.labels("ok").inc()
        self.metrics.hub_up.set(1)
        self._hub_outage.up()
        self._hub_failures = 0
        if not draining:
            summary = {a.task: (a.replicas, a.spec.spec_hash[:8]) for a in resp.assignments}
            if self.desired is None or summary != {
                a.task: (a.replicas, a.spec.spec_hash[:8]) for a in self.desired
            }:
                log.info(
                    "assignments: %s",
                    ", ".join(f"{t}×{n} ({h})" for t, (n, h) in sorted(summary.items())) or "none",
                )
            self.desired = resp.assignments
            if resp.stop:
                log.info("the hub asked this node to stop: draining")
                self.draining.set()
        return True

    def _outage(self, message: str) -> None:
        self._hub_failures += 1
        # One line per outage, not per retry; workers keep running meanwhile.
        self._hub_outage.down(f"{message}; retrying with backoff, workers keep running")

    def _drain(self) -> int:
        log.info("draining: stopping workers (stop timeout %.0f s)", self.settings.stop_timeout)
        deadline_hb = 0.0
        for _round in range(5):
            timeout = 0.0 if self.killed.is_set() else self.settings.stop_timeout
            asked = self.reconciler.stop_all(timeout)
            was_busy = self.reconciler.busy()
            while self.reconciler.busy():
                if self.killed.is_set():
                    self.reconciler.kill_all()
                if time.monotonic() >= deadline_hb and self.node_id:
                    # Keep the hub informed (draining=True) so it does not declare us dead.
                    self._heartbeat(draining=True)
                    deadline_hb = time.monotonic() + self.interval()
                self._wake.wait(0.1)
                self._wake.clear()
            # A start that was in flight when the drain began shows up only now: go
            # round again until a round found nothing to stop and nothing in flight.
            if not asked and not was_busy:
                break
        try:
            self.client.leave()
            log.info("left the hub; bye")
        except (HubUnavailable, HubRejected) as exc:
            log.warning("could not tell the hub we left: %s", mask_text(str(exc)))
        return 1 if self.killed.is_set() else 0

    def health(self) -> dict[str, object]:
        statuses = self.reconciler.statuses()
        return {
            "status": "ok" if not self.reconciler.runtime_error else "degraded",
            "node_id": self.node_id,
            "runtime": self.runtime.name,
            "hub_reachable": not self._hub_outage.is_down and self._registered_once,
            "draining": self.draining.is_set(),
            "instances": len(statuses),
        }

    def close(self) -> None:
        self.reconciler.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        self.runtime.close()
        self.client.close()
