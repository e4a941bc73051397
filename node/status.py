"""Each instance's status for the heartbeat, built one way from the three things that
can show one: an observed instance, a start in flight, or a slot waiting out a backoff.
"""

from __future__ import annotations

from collections.abc import Mapping

from gridq.node.plan import Pending, Slot, SlotKey, instance_id
from gridq.node.runtime.base import Observed
from gridq.nodeproto import InstanceState, InstanceStatus


def _status(
    iid: str,
    task: str,
    index: int,
    spec_hash: str,
    state: InstanceState,
    slot: Slot | None,
    *,
    exit_code: int | None = None,
    metrics_url: str | None = None,
) -> InstanceStatus:
    """``slot``: the history of this instance's position, None when it is another spec's."""
    return InstanceStatus(
        instance_id=iid,
        task=task,
        index=index,
        spec_hash=spec_hash,
        state=state,
        exit_code=exit_code,
        restarts=slot.restarts if slot else 0,
        error=slot.error if slot and slot.failures else None,
        metrics_url=metrics_url,
    )


def _observed_state(o: Observed, p: Pending | None) -> InstanceState:
    if p is not None and p.kind == "stopping":
        return "stopping"
    if o.state == "exited":
        return "exited"
    return "running" if o.state == "running" else "starting"


def statuses(
    observed: list[Observed],
    pending: Mapping[str, Pending],
    slots: Mapping[SlotKey, Slot],
    node_id: str,
) -> list[InstanceStatus]:
    out: dict[str, InstanceStatus] = {}
    seen: set[SlotKey] = set()  # positions already shown with their current history
    for o in observed:
        slot = slots.get((o.task, o.index))
        current = slot if slot is not None and slot.spec_hash == o.spec_hash else None
        state = _observed_state(o, pending.get(o.instance_id))
        out[o.instance_id] = _status(
            o.instance_id,
            o.task,
            o.index,
            o.spec_hash,
            state,
            current,
            exit_code=o.exit_code if o.state == "exited" else None,
            metrics_url=o.metrics_url if state == "running" else None,
        )
        if current:
            seen.add((o.task, o.index))
    for iid, p in pending.items():
        if p.kind == "starting" and iid not in out:
            slot = slots.get((p.task, p.index))
            out[iid] = _status(iid, p.task, p.index, p.spec_hash, "starting", slot)
            seen.add((p.task, p.index))
    for (task, index), s in slots.items():
        if (task, index) in seen or s.next_start is None or s.state is None:
            continue
        iid = instance_id(task, node_id, index)
        out[iid] = _status(iid, task, index, s.spec_hash, s.state, s, exit_code=s.exit_code)
    return list(out.values())
