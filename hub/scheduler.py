"""Placement: which node runs how many workers of which task. A pure function.

``place(tasks, nodes, previous)`` takes each task's desired replica count and
requirements, each eligible node's capacity, and the placement now in force; it
returns the new placement. It is deterministic (same inputs, same output) and
stable: replicas stay where they are while that node is still eligible and has room,
so a heartbeat or an unrelated change never reshuffles running workers.

Rules:
- A node is eligible for a task when its runtime can run it (docker needs an image
  for the node's platform; process needs a command), its arch matches the task's
  ``constraints.arch`` and its labels include ``constraints.labels``.
- A node runs at most ``slots`` (its parallelism) workers, and their memory
  (the task's ``resources.memory_mb``, else the node's container memory) must fit in
  the node's memory when the node reports it.
- Tasks earlier in registration order are served first when room is short.
- New replicas go to the eligible node with the most free slots (spreading load),
  ties broken by fewer replicas of that task, then node id.
- Surplus replicas are removed from the node holding the most of that task, ties
  broken by the larger node id, so removal is as predictable as placement.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gridq.platform import norm_arch

Placement = dict[str, dict[str, int]]  # node_id -> task -> replicas


@dataclass(frozen=True)
class TaskDemand:
    name: str
    replicas: int
    memory_mb: int | None = None
    # None = any platform; else the normalised platforms allowed.
    arches: frozenset[str] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    has_image: bool = True
    has_command: bool = False
    # Platforms the task has a specific image for; empty = one image for all.
    image_arches: frozenset[str] = frozenset()
    has_generic_image: bool = True


@dataclass(frozen=True)
class NodeCapacity:
    node_id: str
    arch: str
    runtime: str
    slots: int
    memory_mb: int = 0  # 0 = unknown: memory is not a limit
    container_memory_mb: int = 1024
    labels: Mapping[str, str] = field(default_factory=dict)


def eligible(task: TaskDemand, node: NodeCapacity) -> bool:
    arch = norm_arch(node.arch)
    if task.arches is not None and arch not in task.arches:
        return False
    if any(node.labels.get(k) != v for k, v in task.labels.items()):
        return False
    if node.runtime == "process":
        return task.has_command
    # docker (and any container runtime): an image for this platform.
    if task.has_generic_image:
        return True
    return arch in task.image_arches


def _worker_memory(task: TaskDemand, node: NodeCapacity) -> int:
    return task.memory_mb or node.container_memory_mb


@dataclass
class _Room:
    node: NodeCapacity
    slots_free: int
    memory_free: float

    def fits(self, mem: int) -> bool:
        return self.slots_free >= 1 and self.memory_free >= mem

    def take(self, mem: int, n: int = 1) -> None:
        self.slots_free -= n
        self.memory_free -= mem * n


@dataclass
class Result:
    placement: Placement
    unplaced: dict[str, int]  # task -> replicas that found no room

    def placed(self, task: str) -> int:
        return sum(t.get(task, 0) for t in self.placement.values())


def place(
    tasks: Sequence[TaskDemand],
    nodes: Sequence[NodeCapacity],
    previous: Mapping[str, Mapping[str, int]] | None = None,
) -> Result:
    previous = previous or {}
    rooms = {
        n.node_id: _Room(
            n, max(0, n.slots), float(n.memory_mb) if n.memory_mb > 0 else float("inf")
        )
        for n in sorted(nodes, key=lambda n: n.node_id)
    }
    out: Placement = {nid: {} for nid in rooms}
    unplaced: dict[str, int] = {}

    # Pass 1: keep what runs (task order decides who keeps room when it shrank).
    for task in tasks:
        kept: dict[str, int] = {}
        for nid in sorted(rooms):
            prev = int(previous.get(nid, {}).get(task.name, 0))
            room = rooms[nid]
            if prev <= 0 or not eligible(task, room.node):
                continue
            mem = _worker_memory(task, room.node)
            n = prev
            while n > 0 and not (room.slots_free >= n and room.memory_free >= mem * n):
                n -= 1
            if n:
                kept[nid] = n
                room.take(mem, n)
        # Too many: remove from the node with most replicas, ties -> larger node id.
        surplus = sum(kept.values()) - max(0, task.replicas)
        while surplus > 0:
            nid = max(kept, key=lambda k: (kept[k], k))
            kept[nid] -= 1
            rooms[nid].take(_worker_memory(task, rooms[nid].node), -1)
            if kept[nid] == 0:
                del kept[nid]
            surplus -= 1
        for nid, n in kept.items():
            out[nid][task.name] = n

    # Pass 2: place what is missing, one replica at a time, spreading. A heap keeps this
    # O(replicas x log nodes): a grid of 1,000 nodes must not stall the hub.
    for task in tasks:
        missing = max(0, task.replicas) - sum(t.get(task.name, 0) for t in out.values())
        if missing <= 0:
            continue
        heap = [
            (-r.slots_free, out[nid].get(task.name, 0), nid)
            for nid, r in rooms.items()
            if eligible(task, r.node)
        ]
        heapq.heapify(heap)
        while missing > 0 and heap:
            _, count, nid = heapq.heappop(heap)
            room = rooms[nid]
            mem = _worker_memory(task, room.node)
            # Room only shrinks while this task is placed: a node that does not fit now
            # never will for this task, so it leaves the heap for good.
            if not room.fits(mem):
                continue
            room.take(mem)
            out[nid][task.name] = count + 1
            missing -= 1
            heapq.heappush(heap, (-room.slots_free, count + 1, nid))
        if missing > 0:
            unplaced[task.name] = missing

    return Result({nid: t for nid, t in out.items() if t}, unplaced)


def autoscale_replicas(backlog: int, minimum: int, maximum: int, per_worker: int) -> int:
    """Workers for a backlog of ``backlog`` jobs: ceil(backlog / per_worker), clamped."""
    want = -(-max(0, backlog) // max(1, per_worker))
    return max(minimum, min(maximum, want))
