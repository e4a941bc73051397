"""Replicated writes: ``WAIT N`` after an enqueue or a settle, so that an acknowledged
job or result survives a failover (``GRIDQ_REDIS_MIN_REPLICAS=N`` or ``?min_replicas=N``).

Redis replicates asynchronously: a master that dies right after answering may take
its last writes with it, and the replica promoted in its place never saw them. WAIT
blocks the *connection that wrote* until N replicas acknowledged everything it wrote,
so the write and its WAIT go down one connection, in one pipeline, to the master
that owns the key (on a cluster: the master of the key's slot, not a random node).

WAIT is not a transaction: when fewer than N replicas acknowledge in time the write
has still happened on the master. ``NotReplicated`` says so; it is a
``redis.RedisError`` so every caller's outage path treats it as transient. The
producer sees it (the job is queued but not yet safe: enqueueing again may run it
twice); the worker retries the settle, and the retry first checks whether the
settle is already there (see gridq.worker.broker.Broker.settle).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import redis
import redis.exceptions as rexc

from gridq.redisurl import is_cluster, min_replicas_of

ENV_MIN_REPLICAS = "GRIDQ_REDIS_MIN_REPLICAS"
ENV_WAIT_MS = "GRIDQ_REDIS_WAIT_MS"
DEFAULT_WAIT_MS = 2000


class NotReplicated(redis.RedisError):
    """Fewer replicas than asked acknowledged a write in time (the write did happen on
    the master, and may be lost if that master fails before they catch up)."""

    def __init__(self, wanted: int, got: int, timeout_ms: int) -> None:
        super().__init__(
            f"only {got} of {wanted} replica(s) acknowledged the write within {timeout_ms} ms"
        )
        self.wanted, self.got = wanted, got


# Errors after which the same call may simply be tried again: the server is gone or
# restarting, a demoted master answers READONLY (a sentinel client then asks the
# sentinels again), a cluster is mid-failover (CLUSTERDOWN, TRYAGAIN, a MOVED the
# client had no retry left for), or a WAIT fell short.
TRANSIENT = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.ReadOnlyError,
    rexc.ClusterDownError,
    rexc.TryAgainError,
    rexc.MovedError,
    rexc.MasterDownError,
    NotReplicated,
)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ValueError(f"{name} must be a whole number >= 0, not {raw!r}")
    return int(raw)


def min_replicas(url: str | None, default: int | None = None) -> int:
    """How many replicas writes through ``url`` wait for: the URL's ``?min_replicas``,
    else ``default`` (a parsed setting), else ``GRIDQ_REDIS_MIN_REPLICAS``, else 0.
    Read when a client is made, never at import."""
    given = min_replicas_of(url) if url else None
    if given is not None:
        return given
    if default is not None:
        return default
    return _env_int(ENV_MIN_REPLICAS, 0)


def wait_ms() -> int:
    """How long one WAIT may block (``GRIDQ_REDIS_WAIT_MS``, default 2000)."""
    return _env_int(ENV_WAIT_MS, DEFAULT_WAIT_MS) or DEFAULT_WAIT_MS


def owner(conn: redis.Redis, key: str | bytes) -> redis.Redis:
    """The client that talks to the master holding ``key`` (``conn`` itself unless it
    is a cluster client, whose commands may each go down another connection)."""
    if not is_cluster(conn):
        return conn
    node = conn.get_node_from_key(key)  # type: ignore[attr-defined]
    return conn.get_redis_connection(node)  # type: ignore[attr-defined,no-any-return]


def refresh(conn: redis.Redis) -> None:
    """After a cluster failover the slot map names a dead master: re-read it."""
    if is_cluster(conn):
        try:
            conn.nodes_manager.initialize()  # type: ignore[attr-defined]
        except redis.RedisError:
            pass  # the next command tries again


def replicated(
    conn: redis.Redis,
    key: str | bytes,
    n: int,
    write: Callable[[Any], Any],
    timeout_ms: int | None = None,
) -> Any:
    """Run ``write(client)`` and, if ``n`` > 0, WAIT for ``n`` replicas on the same
    connection. ``write`` queues its commands on the client it is given (a pipeline
    when waiting) and its value is returned (the last command's reply when waiting).
    NotReplicated if fewer replicas acknowledged in time."""
    if n <= 0:
        return write(conn)
    ms = timeout_ms or wait_ms()
    try:
        pipe = owner(conn, key).pipeline(transaction=False)
        write(pipe)
        pipe.execute_command("WAIT", n, ms)
        *replies, acked = pipe.execute()
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        refresh(conn)  # MOVED / CLUSTERDOWN / a dead master: the next try re-routes
        raise
    if int(acked) < n:
        raise NotReplicated(n, int(acked), ms)
    return replies[-1] if replies else None
