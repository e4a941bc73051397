"""Redis URLs: masking for display, connecting with a precise diagnosis.

URLs carry passwords. ``mask()`` is the only form that may reach a log line, an API
response, an exception message or a metric label.
"""

from __future__ import annotations

import re
import socket
import ssl
from urllib.parse import urlsplit

import redis
import redis.exceptions as rexc

from gridq.errors import RedisAuthError, RedisUnavailable

_CRED = re.compile(r"(?P<scheme>rediss?|unix)://(?P<user>[^:@/]*)(?::(?P<pw>[^@/]*))?@")


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


def password_of(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def validate_url(url: str) -> str:
    """Raise ValueError naming the problem if ``url`` is not a usable Redis URL."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"scheme must be redis://, rediss:// or unix://, not {parts.scheme or 'none'}"
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
    """A redis-py client for ``url``. ``timeout`` bounds connect and socket operations."""
    validate_url(url)
    opts: dict[str, object] = {"decode_responses": decode, "health_check_interval": 30}
    if timeout is not None:
        opts["socket_connect_timeout"] = timeout
        opts["socket_timeout"] = timeout
    opts.update(kw)
    return redis.Redis.from_url(url, **opts)  # type: ignore[arg-type]


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
