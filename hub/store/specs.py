"""A task's spec as the nodes and the scheduler see it (pure functions, no Redis)."""

from __future__ import annotations

import hashlib
from typing import Any

from gridq import contract as c
from gridq.nodeproto import WorkerSpec

from ..models import TaskSpec
from ..scheduler import TaskDemand, norm_arch
from .base import dumps

CELERY_COMMAND = ["gridq", "celery", "worker"]


def celery_queues(spec: TaskSpec) -> list[str]:
    return list(spec.queues) if spec.queues else [q for q in spec.input_queue.split(",") if q]


def worker_spec(spec: TaskSpec) -> WorkerSpec:
    """What a node needs to run the task's workers; the environment CONTRACT.md names.

    NODE_ID, INSTANCE_ID and GRIDQ_METRICS_PORT are per instance: the node adds them.
    """
    env: dict[str, str] = dict(spec.env)
    env.update(
        {
            c.ENV_TASK_NAME: spec.name,
            c.ENV_INPUT_REDIS_URL: spec.worker_input_redis,
            c.ENV_OUTPUT_REDIS_URL: spec.worker_output_redis,
            c.ENV_INPUT_QUEUE: spec.input_queue,
            c.ENV_OUTPUT_QUEUE: spec.output_queue,
            c.ENV_WORKER_POOL: spec.pool,
        }
    )
    if spec.concurrency is not None:
        env[c.ENV_WORKER_CONCURRENCY] = str(spec.concurrency)
    command = spec.command
    if spec.kind == "celery":
        # The wrapper (gridq.worker.celery) reads the app and queues from here and the
        # broker URL from INPUT_REDIS_URL: nothing secret on the command line.
        env["GRIDQ_CELERY_APP"] = spec.app or ""
        env[c.ENV_INPUT_QUEUE] = ",".join(spec.queues) if spec.queues else spec.input_queue
        if not command and not (spec.image or spec.images):
            command = CELERY_COMMAND
    body: dict[str, Any] = {
        "kind": spec.kind,
        "image": spec.image,
        "images": spec.images,
        "command": command,
        "env": env,
        "resources": spec.resources.model_dump(),
    }
    return WorkerSpec.model_validate({**body, "spec_hash": spec_hash_of(body)})


def spec_hash_of(body: dict[str, Any]) -> str:
    """Stable over image/images/command/env/resources/kind: any change rolls workers over."""
    return hashlib.sha256(dumps(body).encode()).hexdigest()[:16]


def demand_of(spec: TaskSpec, replicas: int) -> TaskDemand:
    arches = spec.constraints.arches()
    return TaskDemand(
        name=spec.name,
        replicas=replicas,
        memory_mb=spec.resources.memory_mb,
        arches=frozenset(norm_arch(a) for a in arches) if arches else None,
        labels=dict(spec.constraints.labels),
        has_image=bool(spec.image or spec.images),
        has_command=bool(spec.command)
        or (spec.kind == "celery" and not (spec.image or spec.images)),
        image_arches=frozenset(norm_arch(p) for p in spec.images),
        has_generic_image=bool(spec.image),
    )
