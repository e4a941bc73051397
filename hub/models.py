"""REST models of the user API. Request models forbid unknown fields, so a typo gets a
422 naming the field instead of being dropped silently (as IDM-GridCore did).

Stored tasks keep their real Redis URLs (nodes need them); ``TaskOut`` is the only
shape that leaves the hub, and it masks them.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridq.contract import DEFAULT_POOL, WORKER_ENV, PoolName
from gridq.keys import check_queue_name
from gridq.nodeproto import Resources
from gridq.redisurl import mask, mask_text, validate_url

from . import secret_env

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")

# Docker image reference: [registry[:port]/]path[:tag][@digest], as the distribution
# reference grammar defines it (simplified: no IPv6 registries).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# A first component is a registry only with a dot, a port or "localhost" (Docker's rule).
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:localhost(?::[0-9]+)?|{_LABEL}(?:\.{_LABEL})+(?::[0-9]+)?|{_LABEL}:[0-9]+)"
IMAGE_RE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{{32,}})?$"
)

# The node sets these per instance; the hub sets the others from the task fields.
RESERVED_ENV = frozenset(WORKER_ENV)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Constraints(_Strict):
    arch: str | list[str] | None = Field(
        default=None, description="platforms the task may run on, e.g. linux/arm64 or amd64"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="node labels that must all match"
    )

    def arches(self) -> list[str]:
        if self.arch is None:
            return []
        return [self.arch] if isinstance(self.arch, str) else list(self.arch)


class Autoscale(_Strict):
    min: int = Field(default=0, ge=0, le=10_000)
    max: int = Field(ge=1, le=10_000)
    target_depth_per_worker: int = Field(
        default=10, ge=1, description="queued jobs per worker the autoscaler aims for"
    )

    @model_validator(mode="after")
    def _order(self) -> Autoscale:
        if self.min > self.max:
            raise ValueError("autoscale.min must not exceed autoscale.max")
        return self


def _check_image(v: str) -> str:
    if not IMAGE_RE.match(v) or len(v) > 512:
        raise ValueError(
            "not a valid image reference (expected [registry/]name[:tag][@sha256:digest], lower-case name)"
        )
    return v


class _TaskFields(_Strict):
    """Fields shared by create and patch; every one optional here."""

    kind: Literal["gridq", "celery"] | None = Field(
        default=None,
        description='"gridq" (default) or "celery" (reserved: a Celery worker image; app/queues)',
    )
    image: str | None = Field(default=None, description="container image for every platform")
    images: dict[str, str] | None = Field(
        default=None,
        description='per-platform images, e.g. {"linux/amd64": "...", "linux/arm64": "..."}',
    )
    command: list[str] | None = Field(
        default=None,
        description="argv for the process runtime, or overriding the image's command",
    )
    input_redis: str | None = Field(default=None, description="Redis URL of the input queue")
    output_redis: str | None = Field(
        default=None, description="Redis URL of the output queue (default: input_redis)"
    )
    input_queue: str | None = Field(default=None, max_length=512)
    output_queue: str | None = Field(
        default=None, max_length=512, description="may be empty: results are discarded"
    )
    replicas: int | None = Field(default=None, ge=0, le=10_000)
    env: dict[str, str] | None = None
    resources: Resources | None = None
    constraints: Constraints | None = None
    pool: PoolName | None = None
    concurrency: int | None = Field(default=None, ge=1, le=10_000)
    autoscale: Autoscale | None = None
    # kind = "celery" only (reserved for the Celery integration).
    app: str | None = Field(default=None, max_length=512, description='celery: "module:app"')
    queues: list[str] | None = Field(default=None, description="celery: queues to consume")
    redis_acl: bool | None = Field(
        default=None,
        description="give workers a Redis ACL user limited to this task's keys "
        "(default: GRIDQ_HUB_REDIS_ACL)",
    )

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        return None if v is None else _check_image(v)

    @field_validator("images")
    @classmethod
    def _images(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return v
        for platform, ref in v.items():
            if not PLATFORM_RE.match(platform):
                raise ValueError(f"platform {platform!r} is not like linux/amd64")
            try:
                _check_image(ref)
            except ValueError as exc:
                raise ValueError(f"images[{platform}]: {exc}") from None
        return v

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or not v[0].strip()):
            raise ValueError("command must be a non-empty list whose first item is the program")
        return v

    @field_validator("input_redis", "output_redis")
    @classmethod
    def _redis(cls, v: str | None) -> str | None:
        # The message never contains the URL (it may carry a password).
        return None if v is None else validate_url(v)

    @field_validator("input_queue")
    @classmethod
    def _queue(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("input_queue must not be empty")
        return None if v is None else check_queue_name(v)

    @field_validator("output_queue")
    @classmethod
    def _output_queue(cls, v: str | None) -> str | None:
        # Braces would make it a hash tag: see gridq/keys.py (key layout 2).
        return check_queue_name(v) if v else v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for key in v or {}:
            if not ENV_NAME_RE.match(key):
                raise ValueError(f"env name {key!r} is not a valid environment variable name")
            if key in RESERVED_ENV:
                raise ValueError(
                    f"env {key} is set by gridq from the task's fields; set the field instead"
                )
        return v


class TaskCreate(_TaskFields):
    """A task registration; IDM-GridCore ComputeHub bodies are accepted unchanged."""

    name: str = Field(description="DNS-label style: a-z, 0-9 and '-', at most 63 characters")
    input_redis: str | None = Field(description="Redis URL of the input queue")
    input_queue: str | None = Field(description="name of the input queue", max_length=512)

    @model_validator(mode="before")
    @classmethod
    def _celery_queue(cls, data: Any) -> Any:
        # A celery body names its queues (docs/celery.md), not input_queue.
        if isinstance(data, dict) and data.get("kind") == "celery" and "input_queue" not in data:
            queues = data.get("queues")
            names = queues if isinstance(queues, list) and queues else ["celery"]
            return {**data, "input_queue": ",".join(map(str, names))}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                "name must be DNS-label style: lower-case a-z, 0-9 and '-', starting and ending "
                "with a letter or digit, at most 63 characters"
            )
        return v

    @model_validator(mode="after")
    def _complete(self) -> TaskCreate:
        celery = self.kind == "celery"
        # A celery task without image or command runs `gridq celery worker` (process runtime).
        if not (self.image or self.images or self.command or celery):
            raise ValueError("give image, images or command")
        if self.input_redis is None:
            raise ValueError("input_redis is required")
        if self.input_queue is None and not celery:
            raise ValueError("input_queue is required")
        if celery and not self.app:
            raise ValueError('kind "celery" needs app ("module:app")')
        if self.kind != "celery" and (self.app is not None or self.queues is not None):
            raise ValueError('app and queues are only for kind "celery"')
        return self

    def normalised(self) -> TaskSpec:
        return TaskSpec(
            name=self.name,
            kind=self.kind or "gridq",
            image=self.image,
            images=self.images or {},
            command=self.command,
            input_redis=self.input_redis or "",
            output_redis=self.output_redis,
            input_queue=self.input_queue or ",".join(self.queues or ["celery"]),
            output_queue=self.output_queue or "",
            replicas=1 if self.replicas is None else self.replicas,
            env=self.env or {},
            resources=self.resources or Resources(),
            constraints=self.constraints or Constraints(),
            pool=self.pool or "threads",
            concurrency=self.concurrency,
            autoscale=self.autoscale,
            app=self.app,
            queues=self.queues,
            redis_acl=self.redis_acl,
        )


class TaskPatch(_TaskFields):
    """Any registration field but ``name``; the nodes converge to the new spec."""


class TaskSpec(_Strict):
    """A task as stored in Redis: complete, defaults filled, REAL Redis URLs."""

    name: str
    kind: Literal["gridq", "celery"] = "gridq"
    image: str | None = None
    images: dict[str, str] = Field(default_factory=dict)
    command: list[str] | None = None
    input_redis: str
    output_redis: str | None = None
    input_queue: str
    output_queue: str = ""
    replicas: int = 1
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    constraints: Constraints = Field(default_factory=Constraints)
    pool: PoolName = DEFAULT_POOL
    concurrency: int | None = None  # None: the worker's default for its pool
    autoscale: Autoscale | None = None
    app: str | None = None
    queues: list[str] | None = None
    redis_acl: bool | None = None  # None until the hub applies its default
    # The task's own ACL users' URLs (hub/task_acl.py): what workers get instead of the
    # registering credentials. Never in API answers.
    acl_input_redis: str | None = None
    acl_output_redis: str | None = None

    @property
    def out_redis(self) -> str:
        return self.output_redis or self.input_redis

    @property
    def worker_input_redis(self) -> str:
        return self.acl_input_redis or self.input_redis

    @property
    def worker_output_redis(self) -> str:
        return self.acl_output_redis or self.out_redis

    def as_create(self) -> dict[str, Any]:
        """The spec as a registration body (for merging a PATCH into it)."""
        return self.model_dump(exclude_none=False, exclude={"acl_input_redis", "acl_output_redis"})


class TaskRecord(_Strict):
    """Everything the hub stores about a task (HUB_TASKS value)."""

    spec: TaskSpec
    spec_hash: str
    paused: bool = False
    finished: bool = False  # sequential mode
    created_at: float
    updated_at: float


class LiveFigures(BaseModel):
    depth: int | None = None
    in_flight: int | None = None
    delayed: int | None = None
    dead: int | None = None
    processed: int | None = None
    failed: int | None = None
    retried: int | None = None
    consumers: int | None = None
    oldest_age: float | None = Field(
        default=None, description="seconds the oldest waiting job waited"
    )
    rate: float | None = Field(default=None, description="jobs processed per second, recent")
    error: str | None = Field(default=None, description="why the figures could not be read")


class Instances(BaseModel):
    desired: int = Field(
        description="replicas the task should have now (after pause/autoscale/sequential)"
    )
    placed: int = Field(description="replicas assigned to nodes (fewer than desired: no room)")
    running: int = Field(description="instances nodes report running")
    by_node: dict[str, int] = Field(default_factory=dict, description="node id -> running")
    unplaced: str | None = Field(
        default=None,
        description="why replicas find no node although slots may be free (e.g. the task "
        "has only an image and every online node uses the process runtime), with the fix",
    )


class TaskOut(BaseModel):
    name: str
    kind: str
    image: str | None
    images: dict[str, str]
    command: list[str] | None
    input_redis: str = Field(description="masked")
    output_redis: str = Field(description="masked")
    input_queue: str
    output_queue: str
    replicas: int
    env: dict[str, str] = Field(description="Redis URLs in values masked")
    resources: Resources
    constraints: Constraints
    pool: str
    concurrency: int | None
    autoscale: Autoscale | None
    app: str | None = None
    queues: list[str] | None = None
    redis_acl: bool = False
    spec_hash: str
    status: Literal["active", "paused", "waiting", "finished"]
    created_at: float
    updated_at: float
    live: LiveFigures | None = None
    instances: Instances | None = None

    @classmethod
    def build(
        cls,
        rec: TaskRecord,
        status: str,
        live: LiveFigures | None = None,
        instances: Instances | None = None,
    ) -> TaskOut:
        s = rec.spec
        return cls(
            name=s.name,
            kind=s.kind,
            image=s.image,
            images=s.images,
            command=[mask_text(a) for a in s.command] if s.command else s.command,
            input_redis=mask(s.input_redis),
            output_redis=mask(s.out_redis),
            input_queue=s.input_queue,
            output_queue=s.output_queue,
            replicas=s.replicas,
            env={k: secret_env.shown(k, v) for k, v in s.env.items()},
            resources=s.resources,
            constraints=s.constraints,
            pool=s.pool,
            concurrency=s.concurrency,
            autoscale=s.autoscale,
            app=s.app,
            queues=s.queues,
            redis_acl=bool(s.redis_acl),
            spec_hash=rec.spec_hash,
            status=status,  # type: ignore[arg-type]
            created_at=rec.created_at,
            updated_at=rec.updated_at,
            live=live,
            instances=instances,
        )


class Message(BaseModel):
    ok: bool = True
    changed: bool = True
    message: str
    current: str | None = Field(default=None, description="sequential mode: the task running now")


class NodeInstanceOut(BaseModel):
    instance_id: str
    task: str
    index: int
    state: str
    spec_hash: str
    exit_code: int | None = None
    restarts: int = 0
    error: str | None = None
    metrics_url: str | None = None


class NodeOut(BaseModel):
    node_id: str
    # IDM-GridCore's fields (hub/gridcore.py), for its scripts and troubleshooting guide.
    id: str = Field(description="GridCore's name for node_id")
    architecture: str = Field(description="GridCore's spelling: x86_64, aarch64, arm")
    cpu_count: int = Field(description="GridCore's field: the node's CPUs")
    runtime_status: Literal["Running", "Idle", "Error"] | None = Field(
        description="GridCore's field and spelling (null: a GridNode that sent no heartbeat yet)"
    )
    active_containers: int = Field(description="GridCore's field: workers running now")
    status: Literal["online", "offline", "draining", "stopping", "left"]
    hostname: str
    arch: str
    cpus: int
    memory_mb: int
    labels: dict[str, str]
    runtime: str
    parallelism: int
    container_memory_mb: int
    version: str
    metrics_url: str | None = Field(
        default=None,
        description="the node agent's own Prometheus endpoint, as the node last reported it",
    )
    registered_at: float | None
    last_seen: str | None = Field(description="RFC 3339, UTC (as IDM-GridCore)")
    seconds_since_heartbeat: float | None
    stop_requested: bool
    errors: list[str] = Field(description="node-level and instance errors, in plain words")
    assigned: dict[str, int] = Field(description="task -> instances the hub wants here")
    running: dict[str, int] = Field(description="task -> instances running here")
    instances: list[NodeInstanceOut]


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    redis: str
    version: str
