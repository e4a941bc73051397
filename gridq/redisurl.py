"""Redis URLs: masking for display, connecting with a precise diagnosis.

URLs carry passwords. ``mask()`` is the only form that may reach a log line, an API
response, an exception message or a metric label.

Besides redis-py's own forms (``redis://``, ``rediss://``, ``unix://``) gridq accepts
``redis+cluster://[:PW@]H:P[,H:P...]`` (and ``rediss+cluster://``) for Redis Cluster and
``redis+sentinel://[:PW@]H:P[,H:P...]/MASTER[/DB]`` (and ``rediss+sentinel://``) for a
master found through Sentinel. ``client()`` is the one place clients are built.
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.cluster import ClusterNode as AioNode
from redis.asyncio.cluster import RedisCluster as AioCluster
from redis.asyncio.sentinel import Sentinel as AioSentinel
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot as _crc_slot
from redis.sentinel import Sentinel

from gridq.errors import RedisAuthError, RedisUnavailable

_CRED = re.compile(
    r"(?P<scheme>rediss?(?:\+cluster|\+sentinel)?|unix)://(?P<user>[^:@/]*)(?::(?P<pw>[^@/]*))?@"
)


def mask(url: str | None) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host``; a URL without a password is unchanged."""
    if not url:
        return ""

    def repl(m: re.Match[str]) -> str:
        user = m.group("user")
        if m.group("pw") is None:
            # redis://secret@host: a lone userinfo is taken as the password by redis-py.
            return f"{m.group('scheme')}://***@" if user else m.group(0)
        return f"{m.group('scheme')}://{user}:***@"

    return _CRED.sub(repl, url)


def mask_text(text: str, secrets: list[str] | None = None) -> str:
    """Mask every Redis URL in free text, and any of the given secret strings."""
    out = _CRED.sub(lambda m: mask(m.group(0) + "x")[:-1], text)
    for s in secrets or []:
        if s:
            out = out.replace(s, "***")
    return out


_MULTI = ("redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")
SCHEMES = ("redis", "rediss", "unix", *_MULTI)


@dataclass(frozen=True, slots=True)
class MultiHost:
    """A cluster or sentinel URL taken apart (urllib cannot parse several hosts)."""

    kind: str  # "cluster" or "sentinel"
    tls: bool
    username: str | None
    password: str | None
    hosts: tuple[tuple[str, int], ...]
    master: str | None  # sentinel only
    db: int


def parse_multi(url: str) -> MultiHost | None:
    """The parts of a ``redis+cluster://`` / ``redis+sentinel://`` URL; None for other
    schemes; ValueError naming the problem (never showing the password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _MULTI:
        return None
    kind = scheme.split("+", 1)[1]
    rest, _, query = rest.partition("?")
    if query and "?" in strip_min_replicas(url):
        raise ValueError(f"{scheme}:// URLs take no ?options but min_replicas")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    user = pw = None
    if at:
        u, colon, p = userinfo.partition(":")
        user, pw = (u or None, p) if colon else (None, u)
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{scheme}:// wants HOST:PORT[,HOST:PORT...], got {item.strip()!r}")
        hosts.append((host.strip("[]"), int(port)))
    parts = [x for x in path.split("/") if x]
    master, db = None, 0
    if kind == "sentinel":
        if not parts or len(parts) > 2:
            raise ValueError(f"{scheme}:// wants /MASTER_NAME[/DB] after the hosts")
        master = parts[0]
        if len(parts) == 2:
            if not parts[1].isdigit():
                raise ValueError("the database in a sentinel URL must be a number")
            db = int(parts[1])
    elif parts:
        raise ValueError("a cluster URL names no database (Redis Cluster has only db 0)")
    return MultiHost(kind, scheme.startswith("rediss"), user, pw, tuple(hosts), master, db)


_MIN_REPLICAS = re.compile(r"([?&])min_replicas=([^&]*)(&|$)")


def min_replicas_of(url: str) -> int | None:
    """The ``?min_replicas=N`` of a URL (None if it gives none); ValueError if not a number."""
    m = _MIN_REPLICAS.search(url.partition("#")[0])
    if m is None:
        return None
    if not m.group(2).isdigit():
        raise ValueError("min_replicas in a Redis URL must be a whole number >= 0")
    return int(m.group(2))


def strip_min_replicas(url: str) -> str:
    """``url`` without its ``min_replicas`` option (gridq's, not redis-py's)."""
    out = _MIN_REPLICAS.sub(lambda m: m.group(1) if m.group(3) else "", url)
    return out[:-1] if out.endswith(("?", "&")) else out


def password_of(url: str) -> str | None:
    try:
        multi = parse_multi(url)
        return multi.password if multi else urlsplit(url).password
    except ValueError:
        return None


def validate_url(url: str) -> str:
    """Raise ValueError naming the problem if ``url`` is not a usable Redis URL."""
    min_replicas_of(url)
    if parse_multi(url) is not None:
        return url
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ValueError(
            "scheme must be redis://, rediss://, unix://, redis+cluster://, "
            f"rediss+cluster://, redis+sentinel:// or rediss+sentinel://, not {parts.scheme or 'none'}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("the URL names no host")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("the port is not a number between 0 and 65535") from None
    return url


def client(
    url: str, *, timeout: float | None = None, decode: bool = False, **kw: object
) -> redis.Redis:
    """A redis-py client for ``url``. ``timeout`` bounds connect and socket operations.

    A cluster URL gives a ``RedisCluster``: it has the same command methods, routes
    each command by its key's slot, and refuses a script or transaction whose keys
    span slots (gridq's never do, see gridq/keys.py). It is typed as ``redis.Redis``
    so callers need not care; ``is_cluster()`` tells them apart where it matters.
    """
    validate_url(url)
    url = strip_min_replicas(url)
    opts: dict[str, object] = {"decode_responses": decode, "health_check_interval": 30}
    if timeout is not None:
        opts["socket_connect_timeout"] = timeout
        opts["socket_timeout"] = timeout
    opts.update(kw)
    multi = parse_multi(url)
    if multi is None:
        return redis.Redis.from_url(url, **opts)  # type: ignore[arg-type]
    auth = {"username": multi.username, "password": multi.password}
    if multi.kind == "cluster":
        # Deprecated for cluster nodes (redis-py 6+): timeouts are retried by the
        # cluster client's own retry, which NoBackoff/0 attempts still turns off.
        opts.pop("retry_on_timeout", None)
        return cast(
            redis.Redis,
            RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in multi.hosts],
                ssl=multi.tls,
                **auth,
                **opts,  # type: ignore[arg-type]
            ),
        )
    conn_opts = {k: v for k, v in opts.items() if k.startswith("socket_")}
    sentinel = Sentinel(
        list(multi.hosts),
        sentinel_kwargs={**conn_opts, "ssl": multi.tls},
        **conn_opts,  # type: ignore[arg-type]
    )
    assert multi.master is not None
    return sentinel.master_for(  # type: ignore[no-any-return]
        multi.master, db=multi.db, ssl=multi.tls, **auth, **opts
    )


def aio_client(
    url: str, *, decode: bool = False, max_connections: int = 64, wait: float = 10.0, **kw: object
) -> aioredis.Redis:
    """The asyncio twin of ``client()`` (the hub). On one server the pool blocks up to
    ``wait`` seconds for a free connection rather than failing with "Too many
    connections"; a cluster client keeps a pool per node."""
    validate_url(url)
    url = strip_min_replicas(url)
    opts: dict[str, object] = {"decode_responses": decode, **kw}
    multi = parse_multi(url)
    if multi is None:
        return aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=wait,
                **opts,  # type: ignore[arg-type]
            )
        )
    auth = {"username": multi.username, "password": multi.password}
    if multi.kind == "cluster":
        opts.pop("health_check_interval", None)  # not a cluster option in redis.asyncio
        return cast(
            aioredis.Redis,
            AioCluster(
                startup_nodes=[AioNode(h, p) for h, p in multi.hosts],
                ssl=multi.tls,
                max_connections=max_connections,
                **auth,
                **opts,  # type: ignore[arg-type]
            ),
        )
    conn_opts = {k: v for k, v in opts.items() if k.startswith("socket_")}
    sentinel = AioSentinel(
        list(multi.hosts),
        sentinel_kwargs={**conn_opts, "ssl": multi.tls},
        **conn_opts,  # type: ignore[arg-type]
    )
    assert multi.master is not None
    return sentinel.master_for(multi.master, db=multi.db, ssl=multi.tls, **auth, **opts)  # type: ignore[arg-type]


def direct_url(url: str, timeout: float = 2.0) -> str:
    """A plain URL of one server behind a cluster or sentinel URL (the first cluster
    node; the master the sentinels name now), for checks that speak RESP themselves.
    Other URLs are returned as they are. ConnectionError if no sentinel names a master."""
    m = parse_multi(url)
    if m is None:
        return strip_min_replicas(url)
    if m.kind == "cluster":
        host, port = m.hosts[0]
    else:
        assert m.master is not None
        try:
            host, port = Sentinel(list(m.hosts), socket_timeout=timeout).discover_master(m.master)
        except rexc.RedisError as exc:
            raise ConnectionError(
                f"no sentinel in {mask(url)} names a master {m.master!r}: {type(exc).__name__}"
            ) from None
    auth = ""
    if m.password is not None:
        auth = f"{quote(m.username or '', safe='')}:{quote(m.password, safe='')}@"
    return f"{'rediss' if m.tls else 'redis'}://{auth}{host}:{port}/{m.db}"


def is_cluster(conn: object) -> bool:
    """Whether ``conn`` is a Redis Cluster client (keys of one command must share a slot)."""
    return isinstance(conn, RedisCluster | AioCluster)


def key_slot(key: str | bytes) -> int:
    """The cluster hash slot of ``key`` (hash tags honoured), as ``CLUSTER KEYSLOT`` says."""
    return int(_crc_slot(key.encode() if isinstance(key, str) else key))


def explain(exc: BaseException, url: str) -> RedisAuthError | RedisUnavailable | None:
    """Translate a redis-py exception into a typed error with a plain message (URL masked)."""
    where = mask(url)
    text = str(exc)
    low = text.lower()
    auth_words = (
        "noauth",
        "wrongpass",
        "authentication required",
        "invalid username-password",
        "invalid password",
        "without any password",
        "no password is set",
        "hello must be called",
    )
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthenticationWrongNumberOfArgsError) or (
        isinstance(exc, rexc.ResponseError) and any(w in low for w in auth_words)
    ):
        has_password = bool(password_of(url))
        if "without any password" in low or "no password is set" in low:
            msg = f"Redis at {where} has no password set, but the URL gives one: remove it from the URL or set requirepass"
        elif not has_password:
            msg = f"Redis at {where} requires a password (NOAUTH): put it in the URL as redis://:PASSWORD@host"
        else:
            msg = f"Redis at {where} rejected the credentials (WRONGPASS): the user name or password is wrong"
        return RedisAuthError(msg)
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | OSError | ssl.SSLError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(exc, ssl.SSLError) or isinstance(cause, ssl.SSLError) or "SSL" in text:
            return RedisUnavailable(
                f"TLS handshake with Redis at {where} failed: {_first_line(text)}"
            )
        if (
            isinstance(cause, socket.gaierror)
            or "Name or service not known" in text
            or "nodename nor servname" in text
            or "Temporary failure in name resolution" in text
        ):
            return RedisUnavailable(f"Redis host in {where} does not resolve (DNS)")
        if isinstance(exc, rexc.TimeoutError) or "Timeout" in text or "timed out" in text:
            return RedisUnavailable(
                f"Redis at {where} did not answer in time (firewall, wrong host or port?)"
            )
        if "refused" in text.lower():
            return RedisUnavailable(
                f"Redis at {where} refused the connection (is it running on that port?)"
            )
        return RedisUnavailable(f"Redis at {where} is unreachable: {mask_text(_first_line(text))}")
    return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def check(url: str, timeout: float = 2.0) -> None:
    """AUTH + PING with a short timeout; raise RedisAuthError or RedisUnavailable with the reason."""
    c = client(url, timeout=timeout, health_check_interval=0, retry_on_timeout=False)
    try:
        c.ping()
    except Exception as exc:
        err = explain(exc, url)
        if err is None:
            raise RedisUnavailable(
                f"Redis at {mask(url)} answered PING with an error: {mask_text(_first_line(str(exc)))}"
            ) from None
        raise err from None
    finally:
        c.close()
