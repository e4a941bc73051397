"""The node protocol: what a node agent and the hub say to each other over HTTP.

Shared by gridq.hub (server side) and gridq.node (client side); neither imports the
other. docs/node-protocol.md describes the exchange:

1. ``POST /api/node/register`` with ``Authorization: Bearer <GRIDQ_NODE_TOKEN>`` and a
   RegisterRequest (``node_id`` set when the node resumes an identity it holds the
   secret of) -> RegisterResponse (hub-chosen ``node_id`` and a per-node ``secret``;
   with ``?assignments=true`` also the node's assignments, as a heartbeat answer).
2. ``POST /api/node/{node_id}/heartbeat`` with ``Authorization: Bearer <secret>`` and a
   Heartbeat -> HeartbeatResponse: the desired assignments and stop requests.
   401 = unknown node or wrong secret, 410 = the node was deleted: register again.
3. ``POST /api/node/{node_id}/leave`` (same auth) when the agent exits after a stop.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeInfo(_Model):
    hostname: str = Field(max_length=253)
    arch: str = Field(description="platform as Docker names it, e.g. linux/amd64, linux/arm64")
    cpus: int = Field(ge=1)
    memory_mb: int = Field(ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    # "gridnode": an IDM-GridCore GridNode agent, registered by the hub's /gridnode routes.
    runtime: Literal["docker", "process", "gridnode"]
    parallelism: int = Field(ge=0, description="worker slots on this node")
    container_memory_mb: int = Field(ge=0, default=1024)
    version: str
    metrics_url: str | None = Field(default=None, description="the agent's own /metrics")


class RegisterRequest(_Model):
    protocol: int = PROTOCOL_VERSION
    info: NodeInfo
    # Resuming: the id and secret from the node's state dir. The hub only honours the
    # id when the secret matches, so no node can take over another's identity.
    node_id: str | None = None
    secret: str | None = None


InstanceState = Literal["starting", "running", "exited", "crashloop", "stopping", "failed"]


class InstanceStatus(_Model):
    instance_id: str
    task: str
    index: int
    spec_hash: str
    state: InstanceState
    exit_code: int | None = None
    restarts: int = 0
    error: str | None = Field(default=None, description="plain-words diagnosis of the last failure")
    metrics_url: str | None = None


class Heartbeat(_Model):
    info: NodeInfo
    instances: list[InstanceStatus] = Field(default_factory=list)
    errors: list[str] = Field(
        default_factory=list, description="node-level problems in plain words"
    )
    draining: bool = False


class Resources(_Model):
    cpus: float | None = Field(default=None, gt=0)
    memory_mb: int | None = Field(default=None, gt=0)


class WorkerSpec(_Model):
    """Everything a node needs to run one task's workers. Carries real credentials:
    it travels only to the node the task is assigned to, over the heartbeat."""

    kind: Literal["gridq", "celery"] = "gridq"
    image: str | None = None
    images: dict[str, str] = Field(default_factory=dict)
    command: list[str] | None = None
    env: dict[str, str] = Field(
        default_factory=dict, description="the worker environment, CONTRACT.md's variables included"
    )
    resources: Resources = Field(default_factory=Resources)
    spec_hash: str = Field(
        description="changes whenever anything above changes: the node replaces instances"
    )


class Assignment(_Model):
    task: str
    replicas: int = Field(ge=0, description="how many instances of this task this node runs")
    spec: WorkerSpec


class _Answer(BaseModel):
    # Answers are read by nodes: a node ignores top-level fields a newer hub adds, so the
    # hub can grow its answers without breaking older agents. (Requests stay strict.)
    model_config = ConfigDict(extra="ignore")


class RegisterResponse(_Answer):
    node_id: str
    secret: str
    heartbeat_interval: float
    # Only when the node asks (POST /api/node/register?assignments=true): agents from
    # before these fields validated answers strictly and would reject them.
    assignments: list[Assignment] | None = Field(
        default=None,
        description="the node's assignments, as a heartbeat answer carries them "
        "(only with ?assignments=true): the node can start workers at once",
    )
    spec_version: int | None = Field(
        default=None, description="as in the heartbeat answer (only with ?assignments=true)"
    )


class HeartbeatResponse(_Answer):
    node_id: str
    spec_version: int
    assignments: list[Assignment] = Field(default_factory=list)
    stop: bool = Field(default=False, description="drain and exit")
    heartbeat_interval: float
    server_time: float
