"""IDM-GridCore's wire format, as its GridNode agent and its users' scripts read it.

Models for the GridNode protocol (``/gridnode/register``, ``/gridnode/heartbeat``,
``/gridnode/task``), the GridCore fields of ``/api/nodes`` and of the sequential
answers, and the pure functions that translate between GridCore's names and gridq's.
Written from GridCore's published protocol (docs/migration.md lists every call).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from gridq.platform import norm_arch

from .models import Message, TaskRecord

RuntimeStatus = Literal["Running", "Idle", "Error"]

# GridNode's own table: `uname -m` spelling -> the Docker platform it asks images for.
# Anything else is linux/amd64 there too.
_PLATFORM_OF = {"x86_64": "linux/amd64", "aarch64": "linux/arm64", "arm": "linux/arm/v7"}
# And back: a gridq node's platform in GridCore's `architecture` spelling.
_ARCHITECTURE_OF = {"amd64": "x86_64", "arm64": "aarch64", "arm": "arm"}

# GridNode heartbeats every 30 s by default (gridnode.toml heartbeat_interval) and
# ComputeHub forgot a node after 60 s of silence: offline after three missed beats.
GRIDNODE_OFFLINE_AFTER = 90.0

RUNTIME: Final = "gridnode"  # a GridNode agent's runtime, as /api/nodes and `gridq status` show it


class _Request(BaseModel):
    # GridCore's server (serde) ignores fields it does not know: a newer GridNode that
    # sends one more field must still join.
    model_config = ConfigDict(extra="ignore")


class RegisterRequest(_Request):
    node_id: str | None = Field(
        default=None, description="the id the GridNode saved after its first registration"
    )
    hostname: str = Field(max_length=253)
    architecture: str = Field(max_length=64, description="`uname -m`: x86_64, aarch64, arm")
    cpu_count: int = Field(ge=0, le=2**32 - 1, description="the GridNode's parallelism")


class HeartbeatRequest(_Request):
    node_id: str = Field(max_length=128)
    status: RuntimeStatus
    active_containers: int = Field(ge=0, le=2**32 - 1)


class TaskConfig(BaseModel):
    """The task a GridNode runs: all of its containers run this one."""

    task_name: str
    image: str
    redis_url: None = Field(default=None, description="always null (deprecated in GridCore)")
    input_redis: str | None
    output_redis: str | None
    input_queue: str | None
    output_queue: str | None


class RegisterResponse(BaseModel):
    node_id: str
    current_task: TaskConfig | None


class HeartbeatResponse(BaseModel):
    stop_requested: bool


class SequenceMessage(Message):
    """gridq's answer to /api/tasks/next and /finish, with ComputeHub's fields too."""

    previous: str | None = Field(
        default=None, description="ComputeHub's /next field: the task that was finished"
    )
    completed: str | None = Field(
        default=None, description="ComputeHub's /finish field: the task that was finished"
    )
    started: str | None = Field(
        default=None, description="ComputeHub's /finish field: the task that runs now, or null"
    )


def sequence_message(msg: Message, previous: str | None) -> SequenceMessage:
    done = previous if msg.changed else None
    started = msg.current if msg.changed else None
    return SequenceMessage(**msg.model_dump(), previous=done, completed=done, started=started)


def platform_of(architecture: str) -> str:
    return _PLATFORM_OF.get(architecture, "linux/amd64")


def architecture_of(platform: str) -> str:
    """``linux/amd64`` -> ``x86_64``: GridCore's spelling of a gridq node's platform."""
    arch = norm_arch(platform)
    return _ARCHITECTURE_OF.get(arch, arch)


def image_for(rec: TaskRecord, platform: str) -> str | None:
    """GridCore's rule: the image for this exact platform, else the generic image."""
    return rec.spec.images.get(platform) or rec.spec.image


def task_config(rec: TaskRecord, platform: str) -> TaskConfig | None:
    image = image_for(rec, platform)
    if image is None:
        return None
    s = rec.spec
    # Real credentials: a GridNode needs them to start its containers, exactly as a
    # gridq node gets them in its heartbeat answer; only join-token holders see this.
    return TaskConfig(
        task_name=s.name,
        image=image,
        input_redis=s.worker_input_redis,
        output_redis=s.acl_output_redis or s.output_redis,
        input_queue=s.input_queue,
        # gridq's "" (results discarded) is GridCore's absent output queue.
        output_queue=s.output_queue or None,
    )


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def runtime_status(errors: int, running: int) -> RuntimeStatus:
    """A gridq node's state in GridNode's words (GridNode reports its own)."""
    if errors:
        return "Error"
    return "Running" if running else "Idle"


def node_fields(
    node_id: str, record: dict[str, Any], platform: str, cpus: int, running: int, errors: int
) -> dict[str, Any]:
    """The GridCore fields of one node in /api/nodes: a GridNode's as it reported them,
    a gridq node's translated."""
    gc = record.get("gridcore")
    if gc is not None:
        return {
            "id": node_id,
            "architecture": gc.get("architecture") or architecture_of(platform),
            "cpu_count": cpus,
            "runtime_status": gc.get("runtime_status"),
            "active_containers": int(gc.get("active_containers") or 0),
        }
    return {
        "id": node_id,
        "architecture": architecture_of(platform),
        "cpu_count": cpus,
        "runtime_status": runtime_status(errors, running),
        "active_containers": running,
    }
