"""The placement function, as a table: inputs -> expected placement."""

from __future__ import annotations

from typing import Any

import pytest

from gridq.hub.scheduler import NodeCapacity, TaskDemand, autoscale_replicas, eligible, place


def N(nid: str, slots: int = 4, **kw: Any) -> NodeCapacity:
    kw.setdefault("arch", "linux/amd64")
    kw.setdefault("runtime", "docker")
    return NodeCapacity(node_id=nid, slots=slots, **kw)


def T(name: str, replicas: int, **kw: Any) -> TaskDemand:
    return TaskDemand(name=name, replicas=replicas, **kw)


CASES: list[
    tuple[
        str,
        list[TaskDemand],
        list[NodeCapacity],
        dict[str, dict[str, int]],
        dict[str, dict[str, int]],
        dict[str, int],
    ]
] = [
    # (case, tasks, nodes, previous, expected placement, expected unplaced)
    ("no nodes", [T("a", 2)], [], {}, {}, {"a": 2}),
    (
        "spread over two nodes",
        [T("a", 4)],
        [N("n1"), N("n2")],
        {},
        {"n1": {"a": 2}, "n2": {"a": 2}},
        {},
    ),
    (
        "slots limit",
        [T("a", 5)],
        [N("n1", 2), N("n2", 2)],
        {},
        {"n1": {"a": 2}, "n2": {"a": 2}},
        {"a": 1},
    ),
    ("zero replicas", [T("a", 0)], [N("n1")], {}, {}, {}),
    (
        "earlier task served first when short",
        [T("a", 3), T("b", 3)],
        [N("n1", 4)],
        {},
        {"n1": {"a": 3, "b": 1}},
        {"b": 2},
    ),
    (
        "stable: existing placement kept although uneven",
        [T("a", 3)],
        [N("n1"), N("n2")],
        {"n1": {"a": 3}},
        {"n1": {"a": 3}},
        {},
    ),
    (
        "scale up adds to the emptiest node",
        [T("a", 4)],
        [N("n1"), N("n2")],
        {"n1": {"a": 3}},
        {"n1": {"a": 3}, "n2": {"a": 1}},
        {},
    ),
    (
        "scale down removes from the fullest node",
        [T("a", 2)],
        [N("n1"), N("n2")],
        {"n1": {"a": 3}, "n2": {"a": 1}},
        {"n1": {"a": 1}, "n2": {"a": 1}},
        {},
    ),
    (
        "node gone: its replicas move",
        [T("a", 2)],
        [N("n2")],
        {"n1": {"a": 1}, "n2": {"a": 1}},
        {"n2": {"a": 2}},
        {},
    ),
    (
        "arch constraint",
        [T("a", 2, arches=frozenset({"arm64"}))],
        [N("n1"), N("n2", arch="linux/arm64")],
        {},
        {"n2": {"a": 2}},
        {},
    ),
    (
        "per-platform images only where an image exists",
        [T("a", 2, image_arches=frozenset({"arm64"}), has_generic_image=False)],
        [N("n1"), N("n2", arch="aarch64")],
        {},
        {"n2": {"a": 2}},
        {},
    ),
    (
        "label constraint",
        [T("a", 2, labels={"gpu": "yes"})],
        [N("n1"), N("n2", labels={"gpu": "yes", "zone": "x"})],
        {},
        {"n2": {"a": 2}},
        {},
    ),
    (
        "memory limit per worker",
        [T("a", 4, memory_mb=3000)],
        [N("n1", 8, memory_mb=8000)],
        {},
        {"n1": {"a": 2}},
        {"a": 2},
    ),
    (
        "node container memory used when the task gives none",
        [T("a", 4)],
        [N("n1", 8, memory_mb=2048, container_memory_mb=1024)],
        {},
        {"n1": {"a": 2}},
        {"a": 2},
    ),
    (
        "process runtime needs a command",
        [T("img", 1), T("cmd", 1, has_image=False, has_generic_image=False, has_command=True)],
        [N("p1", runtime="process")],
        {},
        {"p1": {"cmd": 1}},
        {"img": 1},
    ),
    (
        "kept replicas on a shrunken node are capped",
        [T("a", 4)],
        [N("n1", 2)],
        {"n1": {"a": 4}},
        {"n1": {"a": 2}},
        {"a": 2},
    ),
]


@pytest.mark.parametrize(
    ("case", "tasks", "nodes", "previous", "expected", "unplaced"), CASES, ids=[c[0] for c in CASES]
)
def test_place(
    case: str,
    tasks: list[TaskDemand],
    nodes: list[NodeCapacity],
    previous: dict[str, dict[str, int]],
    expected: dict[str, dict[str, int]],
    unplaced: dict[str, int],
) -> None:
    res = place(tasks, nodes, previous)
    assert res.placement == expected
    assert res.unplaced == unplaced


def test_deterministic_and_stable() -> None:
    tasks = [T("a", 5), T("b", 3, memory_mb=2000), T("c", 2, labels={"z": "1"})]
    nodes = [N(f"n{i}", 3, memory_mb=6000, labels={"z": str(i % 2)}) for i in range(5)]
    first = place(tasks, nodes, {})
    # Same inputs in another order: same output.
    assert place(tasks, list(reversed(nodes)), {}).placement == first.placement
    # Re-running with its own output as the previous placement changes nothing.
    assert place(tasks, nodes, first.placement).placement == first.placement


def test_eligible_arch_aliases() -> None:
    assert eligible(T("a", 1, arches=frozenset({"amd64"})), N("n", arch="x86_64"))
    assert not eligible(T("a", 1, arches=frozenset({"amd64"})), N("n", arch="linux/arm64"))


@pytest.mark.parametrize(
    ("backlog", "lo", "hi", "per", "want"),
    [(0, 0, 5, 10, 0), (0, 1, 5, 10, 1), (1, 0, 5, 10, 1), (25, 0, 5, 10, 3), (1000, 0, 5, 10, 5)],
)
def test_autoscale(backlog: int, lo: int, hi: int, per: int, want: int) -> None:
    assert autoscale_replicas(backlog, lo, hi, per) == want
