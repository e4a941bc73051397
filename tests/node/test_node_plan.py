"""The reconcile rules, read off the pure planner (node/plan.py): no runtime, no threads."""

from __future__ import annotations

from gridq.node.plan import Pending, Slot, plan
from gridq.node.runtime.base import Observed
from gridq.nodeproto import Assignment, WorkerSpec

NODE = "n1"


def want(replicas: int, spec_hash: str = "h1", task: str = "t") -> Assignment:
    return Assignment(
        task=task, replicas=replicas, spec=WorkerSpec(command=["x"], spec_hash=spec_hash)
    )


def seen(index: int, spec_hash: str = "h1", state: str = "running", task: str = "t") -> Observed:
    return Observed(
        instance_id=f"{task}-{NODE}-{index}",
        task=task,
        index=index,
        spec_hash=spec_hash,
        node_id=NODE,
        state=state,  # type: ignore[arg-type]
    )


def test_missing_replicas_start_on_the_lowest_free_indexes() -> None:
    p = plan([want(3)], [seen(1)], {}, {}, NODE, 100.0, hold=False, healthy_after=10)
    assert [i for _, i in p.start] == [0, 2]
    assert [(s.task, s.index) for s in p.adopt] == [("t", 1)]  # no history: adopted
    assert not p.stop and not p.collect


def test_a_spec_change_starts_replacements_while_the_old_ones_drain() -> None:
    old = seen(0, spec_hash="h0")
    p = plan([want(1, "h1")], [old], {}, {}, NODE, 100.0, hold=False, healthy_after=10)
    assert p.stop == [old] and [i for _, i in p.start] == [1]


def test_surplus_stops_the_highest_indexes_and_forgets_them() -> None:
    obs = [seen(0), seen(1), seen(2)]
    slots = {("t", i): Slot("t", i, "h1") for i in range(3)}
    p = plan([want(1)], obs, {}, slots, NODE, 100.0, hold=False, healthy_after=10)
    assert [o.index for o in p.stop] == [2, 1]
    assert set(p.forget) == {("t", 2), ("t", 1)} and not p.start


def test_an_exited_worker_is_collected_and_a_due_backoff_restarts() -> None:
    slots = {
        ("t", 0): Slot("t", 0, "h1"),
        ("t", 1): Slot("t", 1, "h1", failures=1, next_start=99.0, state="exited"),
    }
    exited = seen(0, state="exited")
    p = plan([want(2)], [exited], {}, slots, NODE, 100.0, hold=False, healthy_after=10)
    assert p.collect == [exited] and [i for _, i in p.restart] == [1] and not p.start


def test_an_action_in_flight_is_never_issued_twice() -> None:
    pending = {"t-n1-0": Pending("starting", "t", 0, "h1")}
    p = plan([want(1)], [seen(0)], pending, {}, NODE, 100.0, hold=False, healthy_after=10)
    assert not (p.start or p.stop or p.collect or p.adopt)


def test_unassigned_tasks_stop_unless_held_after_registering() -> None:
    stray = seen(0, task="gone")
    held = plan([], [stray], {}, {}, NODE, 100.0, hold=True, healthy_after=10)
    assert not held.stop
    p = plan(
        [],
        [stray],
        {},
        {("gone", 0): Slot("gone", 0, "h1")},
        NODE,
        100.0,
        hold=False,
        healthy_after=10,
    )
    assert p.stop == [stray] and p.forget == [("gone", 0)]


def test_a_slot_healthy_long_enough_recovers() -> None:
    slots = {("t", 0): Slot("t", 0, "h1", failures=2, started=80.0, error="boom")}
    p = plan([want(1)], [seen(0)], {}, slots, NODE, 100.0, hold=False, healthy_after=10)
    assert p.recovered == [("t", 0)]
    early = plan([want(1)], [seen(0)], {}, slots, NODE, 85.0, hold=False, healthy_after=10)
    assert not early.recovered
