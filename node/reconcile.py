"""The reconcile loop, Kubernetes-controller style.

Each pass compares the desired assignments (from the last heartbeat) with what the
runtime observes (containers found by label, recorded processes): ``gridq.node.plan``
decides, as a pure function, and this module carries the plan out:

- an instance of a task no longer assigned, or whose spec hash or node id differs, is
  stopped (a spec change starts the replacements at once, on free indexes, while the old
  ones drain: no gap in capacity);
- fewer instances than replicas: start new ones on the lowest free indexes;
- more: the surplus (highest indexes) is stopped;
- an exited instance is diagnosed and removed, and its slot restarts after an
  exponential backoff; ``crashloop_after`` consecutive failures show as ``crashloop``.

Passes are idempotent: an action in flight (start, stop, collect) marks its instance as
pending, and a pass never issues a second action for a pending instance. Actions run on
a thread pool because a stop takes up to the stop timeout and a pull much longer, and
the heartbeat must never wait for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from gridq.node.config import NodeSettings
from gridq.node.metrics import NodeMetrics
from gridq.node.plan import Pending, Plan, Slot, instance_id, plan
from gridq.node.runtime.base import Instance, Observed, Runtime, StartFailed
from gridq.node.status import statuses
from gridq.nodeproto import Assignment, InstanceState, InstanceStatus
from gridq.redisurl import mask_text

log = logging.getLogger("gridq.node")


class Reconciler:
    def __init__(
        self,
        runtime: Runtime,
        settings: NodeSettings,
        metrics: NodeMetrics,
        wake: Callable[[], None] = lambda: None,
        max_workers: int = 32,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.metrics = metrics
        self.wake = wake
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="gridq-act")
        self._lock = threading.RLock()
        self.pending: dict[str, Pending] = {}
        # Counts finished actions. list() runs outside the lock: a snapshot taken while
        # an action finished may miss a just-started instance (and start it twice) or
        # still show a just-collected one (and count one crash as two). A pass acts only
        # on a snapshot during which no action finished.
        self._done = 0
        self.slots: dict[tuple[str, int], Slot] = {}
        self.observed: list[Observed] = []
        self.runtime_error: str | None = None
        self._futures: set[Future[None]] = set()
        self.stop_timeout = settings.stop_timeout
        self.node_id = ""
        # Until this monotonic time, instances of tasks missing from the desired state are
        # kept: right after (re)registering, the hub may answer before it has placed its
        # tasks again, and an adopted worker must not be killed for that gap.
        self.hold_until = 0.0

    # -- one pass ---------------------------------------------------------------------

    def reconcile(self, desired: list[Assignment], node_id: str) -> None:
        t0 = time.perf_counter()
        for _attempt in range(5):
            done = self._done
            try:
                observed = self.runtime.list()
                self.runtime_error = None
            except Exception as exc:
                # The engine is down or restarting: act on nothing rather than on a guess.
                self.runtime_error = mask_text(f"{self.runtime.name} runtime unavailable: {exc}")
                log.warning("%s", self.runtime_error)
                return
            self._lock.acquire()
            if self._done == done:
                break  # consistent: no action finished while we listed (lock held)
            self._lock.release()
        else:
            return  # actions keep finishing; each one wakes the loop for another pass
        now = time.monotonic()
        try:
            self.node_id = node_id
            self.observed = observed
            self._act(
                plan(
                    desired,
                    observed,
                    self.pending,
                    self.slots,
                    node_id,
                    now,
                    hold=now < self.hold_until,
                    healthy_after=self.settings.healthy_after,
                ),
                node_id,
            )
            self._update_metrics()
        finally:
            self._lock.release()
        self.metrics.reconcile_seconds.observe(time.perf_counter() - t0)

    def _act(self, p: Plan, node_id: str) -> None:
        """Carry out a plan (lock held): slot bookkeeping here, runtime calls on the pool."""
        for o in p.stop:
            self._stop(o)
        for o in p.collect:
            self._collect(o)
        for sl in p.adopt:
            self.slots[(sl.task, sl.index)] = sl
        for key in p.recovered:
            sl = self.slots[key]
            sl.failures, sl.error, sl.exit_code = 0, None, None
        for key in p.forget:
            self.slots.pop(key, None)
        for a, index in p.start:
            self.slots[(a.task, index)] = Slot(a.task, index, a.spec.spec_hash)
            self._start(a, index, node_id)
        for a, index in p.restart:
            self.slots[(a.task, index)].restarts += 1
            self.metrics.restarts.labels(a.task).inc()
            self._start(a, index, node_id)

    # -- actions (run on the pool) ----------------------------------------------------

    def _submit(self, iid: str, pending: Pending, fn: Callable[[], None]) -> None:
        self.pending[iid] = pending

        def run() -> None:
            try:
                fn()
            except Exception as exc:  # an action must never kill the pool thread silently
                log.warning("%s of %s failed: %s", pending.kind, iid, mask_text(str(exc)))
            finally:
                with self._lock:
                    self.pending.pop(iid, None)
                    self._done += 1
                self.wake()

        fut = self.pool.submit(run)
        self._futures.add(fut)
        fut.add_done_callback(self._futures.discard)

    def _start(self, a: Assignment, index: int, node_id: str) -> None:
        iid = instance_id(a.task, node_id, index)
        env = dict(a.spec.env)
        env.update(
            {"NODE_ID": node_id, "INSTANCE_ID": iid, "TASK_NAME": env.get("TASK_NAME", a.task)}
        )
        inst = Instance(
            task=a.task,
            index=index,
            instance_id=iid,
            node_id=node_id,
            spec=a.spec,
            env=env,
            memory_mb=a.spec.resources.memory_mb or self.settings.container_memory,
        )
        slot = self.slots[(a.task, index)]
        slot.next_start = None

        def do() -> None:
            try:
                self.runtime.start(inst)
            except StartFailed as exc:
                log.warning("cannot start %s: %s", iid, exc.diagnosis)
                with self._lock:
                    self._failed(slot, "failed", None, exc.diagnosis)
                return
            log.info("started %s", iid)
            with self._lock:
                slot.started = time.monotonic()
                slot.state = None

        self._submit(iid, Pending("starting", a.task, index, a.spec.spec_hash), do)

    def _stop(self, o: Observed) -> None:
        if o.instance_id in self.pending:
            return

        def do() -> None:
            log.info("stopping %s", o.instance_id)
            self.runtime.stop(o, self.stop_timeout)

        self._submit(o.instance_id, Pending("stopping", o.task, o.index, o.spec_hash), do)

    def _collect(self, o: Observed) -> None:
        slot = self.slots.get((o.task, o.index))

        def do() -> None:
            diagnosis = self.runtime.collect(o)
            log.warning("%s %s", o.instance_id, diagnosis)
            with self._lock:
                if slot is not None:
                    ran = time.monotonic() - slot.started if slot.started else 0.0
                    if ran >= self.settings.healthy_after:
                        slot.failures = 0
                    self._failed(slot, "exited", o.exit_code, diagnosis)

        self._submit(o.instance_id, Pending("collecting", o.task, o.index, o.spec_hash), do)

    def _failed(self, slot: Slot, state: InstanceState, code: int | None, error: str) -> None:
        slot.failures += 1
        s = self.settings
        delay = min(s.restart_backoff * 2 ** (slot.failures - 1), s.restart_backoff_max)
        slot.next_start = time.monotonic() + delay
        slot.state = "crashloop" if slot.failures >= s.crashloop_after else state
        slot.exit_code = code
        slot.error = error

    # -- status -----------------------------------------------------------------------

    def next_due(self) -> float | None:
        """Seconds until the earliest pending restart, for the loop's wait."""
        with self._lock:
            due = [s.next_start for s in self.slots.values() if s.next_start is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def statuses(self) -> list[InstanceStatus]:
        with self._lock:
            return statuses(self.observed, self.pending, self.slots, self.node_id)

    def errors(self) -> list[str]:
        """Node-level problems for Heartbeat.errors: the runtime, and each task's failures."""
        out = []
        if self.runtime_error:
            out.append(self.runtime_error)
        with self._lock:
            seen = set()
            for s in self.slots.values():
                if s.error and s.failures and (s.task, s.error) not in seen:
                    seen.add((s.task, s.error))
                    out.append(f"{s.task}: {s.error}")
        return out

    def _update_metrics(self) -> None:
        counts: dict[str, int] = {}
        for st in self.statuses():
            counts[st.state] = counts.get(st.state, 0) + 1
        self.metrics.set_states(counts)

    # -- shutdown ---------------------------------------------------------------------

    def stop_all(self, timeout: float) -> list[Observed]:
        """Stop every instance (drain): returns what was asked to stop."""
        self.stop_timeout = timeout
        try:
            observed = self.runtime.list()
        except Exception as exc:
            log.warning("cannot list instances to stop them: %s", mask_text(str(exc)))
            observed = self.observed
        with self._lock:
            self.observed = observed
            self.slots.clear()
            for o in observed:
                if o.instance_id not in self.pending:
                    if o.state == "exited":
                        # Nothing to drain; just remove it (and keep the diagnosis in the log).
                        self._collect(o)
                    else:
                        self._stop(o)
        return observed

    def busy(self) -> bool:
        with self._lock:
            return bool(self.pending)

    def kill_all(self) -> None:
        for o in list(self.observed):
            try:
                self.runtime.kill(o)
            except Exception as exc:
                log.warning("kill %s: %s", o.instance_id, mask_text(str(exc)))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
