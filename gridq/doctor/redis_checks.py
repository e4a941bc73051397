"""Checks of one Redis: reachable, credentials, version, eviction policy, persistence, latency.

The credentials check speaks RESP on a raw connection: redis-py quietly accepts a
password sent to a Redis that has none (its AUTH error is swallowed), which is exactly
the mismatch users hit when the producer, the task and Redis disagree.
"""

from __future__ import annotations

import socket
import ssl
import statistics
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from gridq.doctor.checks import Check, fail, ok, warn
from gridq.redisurl import client, direct_url, explain, mask, password_of, validate_url

MIN_VERSION = (6, 2)
LATENCY_WARN_MS = 25.0
EVICTING_HINT = "an evicting policy silently deletes queued jobs when memory runs out"


def _first_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode("utf-8", "replace")


def _resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _open(url: str, timeout: float) -> socket.socket:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(unquote(parts.path))
        return s
    sock = socket.create_connection((parts.hostname or "", parts.port or 6379), timeout=timeout)
    if parts.scheme == "rediss":
        ctx = ssl.create_default_context()
        reqs = parse_qs(parts.query).get("ssl_cert_reqs", [""])[0].lower()
        if reqs in ("none", "cert_none"):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname=parts.hostname)
    sock.settimeout(timeout)
    return sock


def raw_auth(url: str, timeout: float = 2.0) -> str:
    """Send AUTH (or PING when the URL has no credentials); return Redis's first reply line.

    Raises OSError / ssl.SSLError when Redis cannot be reached.
    """
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else None
    pw = unquote(parts.password) if parts.password is not None else None
    if pw is not None and user:
        cmd = _resp("AUTH", user, pw)
    elif pw is not None:
        cmd = _resp("AUTH", pw)
    elif user:  # redis://secret@host: the lone userinfo is the password
        cmd = _resp("AUTH", user)
    else:
        cmd = _resp("PING")
    with _open(url, timeout) as s:
        s.sendall(cmd)
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    if not buf:
        raise ConnectionError("Redis closed the connection without answering")
    return _first_line(buf)


def _unreachable_fix(saw: str) -> str:
    low = saw.lower()
    if "dns" in low or "resolve" in low:
        return "Correct the host name in the URL or make it resolvable from this machine."
    if "tls" in low:
        return "Use rediss:// only when Redis serves TLS (redis:// otherwise) and make its certificate trusted."
    if "in time" in low:
        return "Open the Redis port in the firewall or security group between here and Redis, or correct the host."
    if "refused" in low:
        return "Start Redis or correct the host and port in the URL."
    return "Make Redis reachable from this machine at that URL."


def credentials(url: str, target: str, timeout: float = 2.0) -> tuple[Check, Check | None]:
    """(reachable check, credentials check or None when unreachable)."""
    try:
        validate_url(url)
    except ValueError as exc:
        return (
            fail(
                "redis.reachable",
                f"not a usable Redis URL: {exc}",
                "Write the URL as redis://[:PASSWORD@]HOST:PORT/DB.",
                target,
            ),
            None,
        )
    try:
        reply = raw_auth(direct_url(url, timeout), timeout)
    except (OSError, ssl.SSLError) as exc:
        err = explain(exc, url)
        saw = str(err) if err else f"Redis at {mask(url)} is unreachable: {exc}"
        return fail("redis.reachable", saw, _unreachable_fix(saw), target), None
    reach = ok("redis.reachable", "answered", target)
    low = reply.lower()
    has_pw = password_of(url) is not None or bool(urlsplit(url).username)
    if "without any password configured" in low or "no password is set" in low:
        return reach, fail(
            "redis.credentials",
            "the URL gives a password but this Redis has none set (AUTH is refused)",
            "Remove the password from the URL, or set requirepass on Redis to the same value.",
            target,
        )
    if (
        low.startswith("-wrongpass")
        or "invalid password" in low
        or "invalid username-password" in low
    ):
        return reach, fail(
            "redis.credentials",
            "WRONGPASS: Redis rejected the user name or password in the URL",
            "Put the password Redis actually uses (requirepass / ACL) into the URL, the same for producers and the task.",
            target,
        )
    if low.startswith("-noauth") or "authentication required" in low:
        return reach, fail(
            "redis.credentials",
            "NOAUTH: Redis requires a password but the URL gives none",
            "Add the password to the URL as redis://:PASSWORD@host:port/db.",
            target,
        )
    if reply.startswith("-"):
        return reach, fail(
            "redis.credentials",
            f"Redis answered {reply[:200]}",
            "Check the user's ACL permissions and the URL's credentials.",
            target,
        )
    return reach, ok("redis.credentials", "accepted" if has_pw else "no password needed", target)


def _info(conn: Any, section: str) -> dict[str, Any]:
    data: dict[str, Any] = conn.info(section)
    return data


def check_redis(url: str, target: str, *, full: bool = True, timeout: float = 2.0) -> list[Check]:
    """All Redis checks for ``url``; ``full=False`` stops after reachability, credentials, latency."""
    target = target or f"Redis {mask(url)}"
    reach, cred = credentials(url, target, timeout)
    out = [reach]
    if cred is None:
        return out
    out.append(cred)
    if cred.status == "fail":
        return out
    conn = client(url, timeout=timeout, health_check_interval=0)
    try:
        if full:
            out += _server_checks(conn, target)
        out.append(_latency(conn, target))
    except Exception as exc:  # a Redis that dies mid-check, ACLs forbidding INFO...
        err = explain(exc, url)
        out.append(
            warn(
                "redis.info",
                f"could not read the server's settings: {err or exc}",
                "Allow the INFO and PING commands for this user.",
                target,
            )
        )
    finally:
        conn.close()
    return out


def _server_checks(conn: Any, target: str) -> list[Check]:
    out: list[Check] = []
    server = _info(conn, "server")
    raw = str(server.get("redis_version", "0"))
    try:
        version = tuple(int(x) for x in raw.split(".")[:2])
    except ValueError:
        version = (0, 0)
    if version >= MIN_VERSION:
        out.append(ok("redis.version", f"Redis {raw}", target))
    else:
        out.append(
            fail(
                "redis.version",
                f"Redis {raw} is older than 6.2 (gridq needs BLMOVE and other 6.2 commands)",
                "Upgrade Redis to 6.2 or newer (7.x recommended).",
                target,
            )
        )
    memory = _info(conn, "memory")
    policy = str(memory.get("maxmemory_policy", "") or _config(conn, "maxmemory-policy") or "")
    maxmemory = int(memory.get("maxmemory", 0) or 0)
    if policy == "noeviction":
        out.append(ok("redis.maxmemory-policy", "noeviction", target))
    elif not policy:
        out.append(
            warn(
                "redis.maxmemory-policy",
                "could not read maxmemory-policy (INFO and CONFIG hidden)",
                "Make sure maxmemory-policy is noeviction on this Redis.",
                target,
            )
        )
    else:
        limit = f" with maxmemory {maxmemory // (1024 * 1024)} MB" if maxmemory else ""
        out.append(
            fail(
                "redis.maxmemory-policy",
                f"maxmemory-policy is {policy}{limit}: {EVICTING_HINT}",
                "Set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction and in redis.conf, or your provider's parameter group).",
                target,
            )
        )
    persistence = _info(conn, "persistence")
    aof = bool(int(persistence.get("aof_enabled", 0) or 0))
    save = _config(conn, "save")
    if aof:
        out.append(ok("redis.persistence", "AOF on", target))
    elif save:
        out.append(ok("redis.persistence", f"RDB snapshots (save {save})", target))
    elif save is None:
        out.append(
            warn(
                "redis.persistence",
                "AOF is off and the RDB save points cannot be read (CONFIG is disabled)",
                "Make sure AOF (appendonly yes) or RDB snapshots are on, or queued jobs are lost on a restart.",
                target,
            )
        )
    else:
        out.append(
            warn(
                "redis.persistence",
                "neither AOF nor RDB snapshots are on: a restart loses every queued job",
                "Turn on AOF (appendonly yes, appendfsync everysec) or RDB save points.",
                target,
            )
        )
    return out


def _config(conn: Any, key: str) -> str | None:
    """CONFIG GET value, or None when CONFIG is disabled (managed Redis)."""
    try:
        data = conn.config_get(key)
    except Exception:
        return None
    val = data.get(key) if isinstance(data, dict) else None
    if val is None:
        val = data.get(key.encode()) if isinstance(data, dict) else None
    if isinstance(val, bytes):
        val = val.decode()
    return None if val is None else str(val)


def _latency(conn: Any, target: str, rounds: int = 5) -> Check:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        conn.ping()
        samples.append((time.perf_counter() - t0) * 1000)
    med = statistics.median(samples)
    saw = f"round trip {med:.1f} ms (median of {rounds} PINGs)"
    if med >= LATENCY_WARN_MS:
        return warn(
            "redis.latency",
            saw,
            "Run Redis close to the workers (same region / zone): every job costs several round trips.",
            target,
        )
    return ok("redis.latency", saw, target)
