"""Names the parts agree on, written once: the worker environment the node sets (the
names IDM-GridCore injects, so its images run unchanged), the worker pool names, and the
labels gridq puts on worker containers.

Hub, node and worker each import these from here instead of typing the strings, so a
rename is one edit and a typo is an AttributeError instead of a silently unset variable.
"""

from __future__ import annotations

from typing import Literal, get_args

# --- worker environment (CONTRACT.md, "Worker environment") ---------------------------
ENV_TASK_NAME = "TASK_NAME"
ENV_NODE_ID = "NODE_ID"
ENV_INSTANCE_ID = "INSTANCE_ID"
ENV_INPUT_REDIS_URL = "INPUT_REDIS_URL"
ENV_OUTPUT_REDIS_URL = "OUTPUT_REDIS_URL"
ENV_INPUT_QUEUE = "INPUT_QUEUE"
ENV_OUTPUT_QUEUE = "OUTPUT_QUEUE"
ENV_WORKER_POOL = "GRIDQ_WORKER_POOL"
ENV_WORKER_CONCURRENCY = "GRIDQ_WORKER_CONCURRENCY"
ENV_METRICS_PORT = "GRIDQ_METRICS_PORT"

# Set by the node per instance; the hub sets the rest from the task's fields.
PER_INSTANCE_ENV = (ENV_NODE_ID, ENV_INSTANCE_ID, ENV_METRICS_PORT)

# Every variable the node owns: a task's own ``env`` may not set these.
WORKER_ENV = (
    ENV_TASK_NAME,
    ENV_NODE_ID,
    ENV_INSTANCE_ID,
    ENV_INPUT_REDIS_URL,
    ENV_OUTPUT_REDIS_URL,
    ENV_INPUT_QUEUE,
    ENV_OUTPUT_QUEUE,
    ENV_WORKER_POOL,
    ENV_WORKER_CONCURRENCY,
    ENV_METRICS_PORT,
)

# --- worker pools -----------------------------------------------------------------------
PoolName = Literal["threads", "processes", "solo", "asyncio"]
POOL_NAMES: tuple[str, ...] = get_args(PoolName)
DEFAULT_POOL: PoolName = "threads"

# --- container labels (docker runtime) --------------------------------------------------
LABEL_AGENT = "gridq.agent"
LABEL_TASK = "gridq.task"
LABEL_NODE = "gridq.node"
LABEL_INSTANCE = "gridq.instance"
LABEL_INDEX = "gridq.index"
LABEL_SPEC = "gridq.spec"
LABEL_METRICS_PORT = "gridq.metrics-port"
# IDM-GridCore's troubleshooting reads `docker ps --filter label=task=NAME`.
LABEL_GRIDCORE_TASK = "task"
