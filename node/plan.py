"""Planning, apart from acting: what should run, as a pure function.

``plan`` takes the desired assignments, what the runtime observes, the actions still in
flight and each slot's restart history, and returns a ``Plan``: which instances to stop
or collect, which slots to start, restart, adopt or forget. It calls no runtime and
changes nothing (kopf keeps cause detection apart from handler execution the same way),
so every rule of the reconcile loop can be read, and tested, here; ``Reconciler`` only
carries a plan out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gridq.node.runtime.base import Observed
from gridq.nodeproto import Assignment, InstanceState

SlotKey = tuple[str, int]  # (task, index)


def instance_id(task: str, node_id: str, index: int) -> str:
    return f"{task}-{node_id}-{index}"


@dataclass
class Slot:
    """One (task, index) position and its restart history."""

    task: str
    index: int
    spec_hash: str
    restarts: int = 0
    failures: int = 0  # consecutive, for the backoff
    next_start: float | None = None  # monotonic; set while waiting to restart
    state: InstanceState | None = None  # exited/crashloop/failed while waiting
    exit_code: int | None = None
    error: str | None = None
    started: float | None = None  # monotonic time of the last start


@dataclass
class Pending:
    """An action in flight for one instance: a pass never issues a second one."""

    kind: str  # starting | stopping | collecting
    task: str
    index: int
    spec_hash: str


@dataclass
class Plan:
    """What one pass does, in the order the reconciler carries it out."""

    stop: list[Observed] = field(default_factory=list)
    collect: list[Observed] = field(default_factory=list)  # exited: diagnose, remove
    adopt: list[Slot] = field(default_factory=list)  # running, no history: started now
    recovered: list[SlotKey] = field(default_factory=list)  # healthy long enough: reset
    forget: list[SlotKey] = field(default_factory=list)  # history no longer needed
    start: list[tuple[Assignment, int]] = field(default_factory=list)  # new slots
    restart: list[tuple[Assignment, int]] = field(default_factory=list)  # backoff over


def plan(
    desired: list[Assignment],
    observed: list[Observed],
    pending: Mapping[str, Pending],
    slots: Mapping[SlotKey, Slot],
    node_id: str,
    now: float,
    *,
    hold: bool,
    healthy_after: float,
) -> Plan:
    """The plan for one pass. ``hold``: keep instances of tasks missing from ``desired``
    (right after registering, the hub may not have placed its tasks again yet)."""
    out = Plan()
    want = {a.task: a for a in desired if a.replicas >= 0}
    by_task: dict[str, list[Observed]] = {}
    for o in observed:
        by_task.setdefault(o.task, []).append(o)
    # Tasks we run but no longer should, and foreign leftovers.
    for task, insts in by_task.items():
        if task not in want and not hold:
            out.stop.extend(o for o in insts if o.instance_id not in pending)
    out.forget.extend(k for k in slots if k[0] not in want)
    for task, a in want.items():
        _plan_task(out, a, by_task.get(task, []), pending, slots, node_id, now, healthy_after)
    return out


def _plan_task(
    out: Plan,
    a: Assignment,
    insts: list[Observed],
    pending: Mapping[str, Pending],
    slots: Mapping[SlotKey, Slot],
    node_id: str,
    now: float,
    healthy_after: float,
) -> None:
    spec_hash = a.spec.spec_hash
    occupied: set[int] = set()  # indexes in use by anything, any spec
    active: set[int] = set()  # indexes that count toward the replicas
    healthy: dict[int, Observed] = {}
    for o in insts:
        occupied.add(o.index)
        current = o.spec_hash == spec_hash and o.node_id == node_id
        p = pending.get(o.instance_id)
        if p is not None:
            if current and p.kind != "stopping":
                active.add(o.index)
            continue
        if not current:
            out.stop.append(o)
        elif o.state == "exited":
            # Still counts: it restarts on the same index after its backoff.
            out.collect.append(o)
            active.add(o.index)
        else:
            healthy[o.index] = o
            active.add(o.index)
            slot = slots.get((a.task, o.index))
            if slot is None or slot.spec_hash != spec_hash:
                # Adopted from a previous agent: no history, counts as started now.
                out.adopt.append(Slot(a.task, o.index, spec_hash, started=now))
            elif slot.failures and slot.started is not None and now - slot.started >= healthy_after:
                out.recovered.append((a.task, o.index))
    for p in pending.values():
        if p.task == a.task:
            occupied.add(p.index)
            if p.kind != "stopping" and p.spec_hash == spec_hash:
                active.add(p.index)
    # Drop history of indexes no longer used by this spec.
    out.forget.extend(
        k
        for k, sl in slots.items()
        if k[0] == a.task and sl.spec_hash != spec_hash and k[1] not in occupied
    )
    # Slots waiting out a backoff: their instance is gone, the index stays theirs.
    waiting = sorted(
        i
        for (t, i), sl in slots.items()
        if t == a.task and sl.spec_hash == spec_hash and sl.next_start is not None
        if i not in occupied
    )
    occupied.update(waiting)
    active.update(waiting)
    surplus = len(active) - a.replicas
    if surplus > 0:
        # Waiting slots go first (nothing to stop), then the highest indexes.
        dropped = sorted(waiting, reverse=True)[:surplus]
        out.forget.extend((a.task, i) for i in dropped)
        waiting = [i for i in waiting if i not in dropped]
        for idx in sorted(healthy, reverse=True)[: max(0, surplus - len(dropped))]:
            out.stop.append(healthy[idx])
            out.forget.append((a.task, idx))
    elif surplus < 0:
        index = 0
        for _ in range(-surplus):
            while index in occupied:
                index += 1
            occupied.add(index)
            out.start.append((a, index))
    for i in waiting:
        next_start = slots[(a.task, i)].next_start
        if next_start is not None and next_start <= now:
            out.restart.append((a, i))
