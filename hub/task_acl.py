"""The task routes' side of per-task Redis users (hub/redis_acl.py does the Redis part).

``provision`` runs on create and on every PATCH (a new password each time: changing
a task rotates it, and the new spec hash rolls the workers over to it); ``remove``
runs when the task is deleted. The users' URLs live in the task's spec in the hub's
Redis (``acl_input_redis``/``acl_output_redis``), where worker_spec() reads them.
"""

from __future__ import annotations

import logging

import anyio.to_thread
import redis

from gridq.redisurl import explain, mask_text

from . import redis_acl
from .config import HubSettings
from .errors import unprocessable
from .models import TaskSpec

log = logging.getLogger("gridq.hub")

KIND = "redis_acl"


def _servers(spec: TaskSpec) -> list[tuple[str, str]]:
    """(field, registering URL) of each Redis the task's user lives on."""
    out = [("input_redis", spec.input_redis)]
    if spec.out_redis != spec.input_redis and spec.output_queue:
        out.append(("output_redis", spec.out_redis))
    return out


def _why(exc: BaseException, url: str) -> str:
    known = explain(exc, url)
    return str(known) if known is not None else mask_text(str(exc), [url])


async def _drop(spec: TaskSpec, timeout: float, keep: set[str]) -> None:
    user = redis_acl.user_name(spec.name)
    for _, url in _servers(spec):
        if url in keep:
            continue
        try:
            await anyio.to_thread.run_sync(redis_acl.delete, url, user, timeout)
        except (redis.RedisError, OSError) as exc:
            # The task goes on regardless; the user is left behind and says so once.
            log.warning(
                "task %s: could not delete Redis user %s: %s", spec.name, user, _why(exc, url)
            )


async def provision(
    spec: TaskSpec, settings: HubSettings, previous: TaskSpec | None = None
) -> TaskSpec:
    """``spec`` with fresh ACL users when redis_acl is on (hub default applied); the
    previous spec's users on servers no longer used are deleted. 422 when refused."""
    enabled = settings.redis_acl if spec.redis_acl is None else spec.redis_acl
    spec = spec.model_copy(
        update={"redis_acl": enabled, "acl_input_redis": None, "acl_output_redis": None}
    )
    timeout = settings.validate_redis_timeout
    if previous is not None and previous.redis_acl:
        await _drop(previous, timeout, {u for _, u in _servers(spec)} if enabled else set())
    if not enabled:
        return spec
    if spec.kind != "gridq":
        raise unprocessable(
            KIND, 'redis_acl is for kind "gridq" tasks (a Celery worker uses kombu\'s keys)', KIND
        )
    user, password = redis_acl.user_name(spec.name), redis_acl.new_password()
    urls: dict[str, str] = {}
    for field, url in _servers(spec):
        if field == "input_redis":
            patterns = redis_acl.key_patterns([spec.input_queue])
            if spec.out_redis == spec.input_redis:
                patterns += redis_acl.output_patterns(spec.output_queue)
        else:
            patterns = redis_acl.output_patterns(spec.output_queue)
        grant = redis_acl.Grant(url, user, tuple(patterns))
        try:
            await anyio.to_thread.run_sync(redis_acl.create, grant, password, timeout)
            urls[field] = redis_acl.with_user(url, user, password)
        except (redis_acl.AclNotAllowed, redis_acl.AclUnsupported) as exc:
            raise unprocessable(field, f"redis_acl: {exc}", KIND) from None
        except (redis.RedisError, OSError) as exc:
            raise unprocessable(field, f"redis_acl: {_why(exc, url)}", KIND) from None
    return spec.model_copy(
        update={
            "acl_input_redis": urls["input_redis"],
            # No output Redis of its own (or no output queue): never the registering URL.
            "acl_output_redis": urls.get("output_redis", urls["input_redis"]),
        }
    )


async def remove(spec: TaskSpec | None, settings: HubSettings) -> None:
    """After a task is deleted: delete its users (failures are logged, not raised)."""
    if spec is not None and spec.redis_acl:
        await _drop(spec, settings.validate_redis_timeout, set())
