"""Why a task's replicas find no node, when the reason is the runtime: a process node
runs a task's ``command`` and cannot run an image; a docker node needs an image.

Slots may be free on every node and still not one can take the task; saying "no free
slot" then sends the user after the wrong fix. ``gridq status``, ``gridq task show`` and
``gridq doctor`` all take their words from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ONLINE = ("online", "draining")


def _runnable_on(task: Mapping[str, Any], runtime: str) -> bool:
    """The hub's eligibility rule for the runtime alone (arch and labels aside)."""
    image = bool(task.get("image") or task.get("images"))
    if runtime == "process":
        # A celery task without image or command runs `gridq celery worker` as a process.
        return bool(task.get("command")) or (task.get("kind") == "celery" and not image)
    return image


def runtime_mismatch(
    task: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]]
) -> tuple[str, str] | None:
    """(what stops every online node from running ``task`` (a task JSON), the fix), or
    None. None too when no node is online: that is another problem, with its own message.
    """
    runtimes = sorted(
        {str(n.get("runtime") or "docker") for n in nodes if n.get("status") in ONLINE}
    )
    if not runtimes or any(_runnable_on(task, r) for r in runtimes):
        return None
    if runtimes == ["process"]:
        return (
            "the task has only an image and every online node uses the process runtime, "
            "which cannot run images",
            'Give the task a `command` (e.g. ["gridq", "worker", "myjobs:app"]) that process '
            "nodes can run, or start a node with `gridq node --runtime docker`.",
        )
    return (
        f"the task has no image and every online node uses the {'/'.join(runtimes)} "
        "runtime, which runs only images",
        "Give the task an `image` (or `images` per platform), or start a node with "
        "`gridq node --runtime process`.",
    )
