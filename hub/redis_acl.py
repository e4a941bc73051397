"""Least-privilege Redis users per task (``"redis_acl": true``, docs/security.md).

The hub creates one ACL user per task on the task's input Redis (and on its output
Redis when that is another server), with the registration's credentials. The user may
run only the commands a gridq worker runs, on only the task's keys; workers get its
URL, never the registering one. Blocking Redis calls: run them in a thread.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import redis

from gridq.errors import GridqError
from gridq.keys import QueueKeys
from gridq.redisurl import client, parse_multi

USER_PREFIX = "gridq-task-"

# What a gridq worker (gridq/worker: broker, Lua scripts, heartbeat, health) and the
# SDK's Queue in a handler (enqueue, stats) send. Redis checks the commands a Lua
# script calls against the user too, so the scripts' commands are listed as well.
# MULTI/EXEC: transactional pipelines. CLIENT SETNAME/SETINFO: redis-py on connect
# (SETINFO does not exist before Redis 7.2: dropped there, see _setuser).
WORKER_COMMANDS = (
    # connection (redis-py 8 sends CLIENT MAINT_NOTIFICATIONS and SETINFO on connect;
    # servers that lack a subcommand drop it below)
    "ping", "hello", "client|setname", "client|setinfo", "client|maint_notifications",
    "select",
    # scripts: the broker's Lua (EVALSHA, with SCRIPT LOAD/EVAL when the cache is cold)
    "evalsha", "eval", "script|load", "script|exists",
    # lists: queue, priority lists, in-flight lists, dead letters, output queue
    "lpush", "rpush", "lpop", "rpop", "lrem", "llen", "lrange", "lindex", "blmove", "lmove",
    # sorted sets: delayed jobs, consumers
    "zadd", "zrem", "zrange", "zrangebyscore", "zremrangebyscore", "zcard", "zscore",
    # sets: cancelled / kill sets, workflow barriers' finished members
    "sadd", "srem", "scard", "smembers", "sismember",
    # strings: alive (with TTL), paused, last_claim; hashes: stats, job records
    "set", "get", "del", "exists", "ttl", "pttl", "expire", "pexpire",
    "hincrby", "hgetall", "hget", "hmget", "hset", "hsetnx", "hdel", "hexists", "lpos",
    # WAIT for replicas (GRIDQ_REDIS_MIN_REPLICAS)
    "wait",
    # pipelines; TIME for the server clock
    "multi", "exec", "discard", "time",
)  # fmt: skip

_UNKNOWN_MODIFIER = re.compile(r"modifier '\+([^']+)'")


class AclNotAllowed(GridqError):
    """The registering credentials may not run ACL commands (message names no secret)."""


class AclUnsupported(GridqError):
    """The URL is of a kind this module cannot give a user (cluster, sentinel)."""


def user_name(task: str) -> str:
    return f"{USER_PREFIX}{task}"


def new_password() -> str:
    return secrets.token_hex(32)


def _glob(text: str) -> str:
    """``text`` as a literal inside a Redis ACL key pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def key_patterns(queues: list[str]) -> list[str]:
    """ACL key patterns: each queue's list and its gridq keys (``gridq:q:{NAME}:*``)."""
    out: list[str] = []
    for q in queues:
        out += [f"~{_glob(q)}", f"~{_glob(QueueKeys(q).tagged_prefix)}*"]
    return out


def output_patterns(queue: str) -> list[str]:
    """The output queue: the worker only LPUSHes results to its list."""
    return [f"~{_glob(queue)}"] if queue else []


def with_user(url: str, user: str, password: str) -> str:
    """``url`` with its credentials replaced by ``user``/``password``."""
    if parse_multi(url) is not None:
        raise AclUnsupported(
            "redis_acl supports redis://, rediss:// and unix:// URLs, not cluster or sentinel"
        )
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class Grant:
    """One user on one Redis: the registering URL and what the user may touch."""

    admin_url: str
    user: str
    patterns: tuple[str, ...]


def _refused(exc: redis.ResponseError) -> bool:
    return str(exc).startswith("NOPERM") or "no permissions" in str(exc)


def _setuser(conn: redis.Redis, user: str, password: str, patterns: tuple[str, ...]) -> None:
    commands = list(WORKER_COMMANDS)
    while True:
        rules = ["reset", "on", f">{password}", *patterns, "resetchannels", "-@all"]
        rules += [f"+{c}" for c in commands]
        try:
            conn.execute_command("ACL", "SETUSER", user, *rules)
            return
        except redis.ResponseError as exc:
            # Older servers lack some (sub)commands: drop the one named and try again.
            m = _UNKNOWN_MODIFIER.search(str(exc))
            if m and m.group(1) in commands:
                commands.remove(m.group(1))
                continue
            raise


def _persist(conn: redis.Redis) -> None:
    """ACL SAVE when the server has an aclfile; without one, users live until restart."""
    try:
        conn.execute_command("ACL", "SAVE")
    except redis.ResponseError as exc:
        if "not configured to use an ACL file" not in str(exc):
            raise


def create(grant: Grant, password: str, timeout: float) -> None:
    """Create or reset the user with ``password``. AclNotAllowed when refused."""
    conn = client(grant.admin_url, timeout=timeout)
    try:
        _setuser(conn, grant.user, password, grant.patterns)
        _persist(conn)
    except redis.ResponseError as exc:
        if _refused(exc):
            raise AclNotAllowed(
                "the credentials in this URL may not run ACL commands (NOPERM): "
                "redis_acl needs a Redis user allowed ACL SETUSER/DELUSER/SAVE "
                "(e.g. the default user, or one with +acl)"
            ) from None
        raise
    finally:
        conn.close()


def delete(admin_url: str, user: str, timeout: float) -> None:
    """Remove the user (its connections are closed by Redis); absent is fine."""
    conn = client(admin_url, timeout=timeout)
    try:
        conn.execute_command("ACL", "DELUSER", user)
        _persist(conn)
    finally:
        conn.close()
