"""What every CLI command shares: finding the hub and Redis, errors as one line, --json."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from gridq.redisurl import mask_text

F = TypeVar("F", bound=Callable[..., Any])

# What click exits with on a usage mistake; our own "you must give X" errors use it too.
EXIT_USAGE = 2


class CliError(click.ClickException):
    """A one-line error for the user; exit code 1 (or the given one)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {mask_text(self.format_message())}", err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


def friendly(fn: F) -> F:
    """Turn expected failures into one clear line and a non-zero exit, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import httpx
        import redis

        from gridq.errors import GridqError
        from gridq.hubtls import untrusted, untrusted_message
        from gridq.redisurl import explain

        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except GridqError as exc:
            fail(str(exc))
        except httpx.HTTPError as exc:
            why = untrusted(exc)
            if why:
                fail(untrusted_message(why))
            fail(f"cannot reach the hub: {exc}")
        except redis.RedisError as exc:
            err = explain(exc, _last_redis_url) if _last_redis_url else None
            fail(str(err) if err else f"Redis error: {exc}")

    return wrapper  # type: ignore[return-value]


def console() -> Any:
    """A rich console; when output is not a terminal, wide enough that tables never fold."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def state_dir() -> Path:
    """The local stack's folder (GRIDQ_STATE_DIR, else a per-user one)."""
    env = os.environ.get("GRIDQ_STATE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gridq"


def local_stack() -> dict[str, Any] | None:
    """The running local stack's connection facts (written by ``gridq up``), if any."""
    f = state_dir() / "stack.json"
    try:
        data: dict[str, Any] = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return data


def hub_location(url: str | None = None, token: str | None = None) -> tuple[str, str]:
    """Hub URL and admin token: flags, then GRIDQ_HUB_URL/GRIDQ_HUB_TOKEN[_FILE], then the local stack."""
    from gridq.hubs import first_answering, parse_hub_urls
    from gridq.settings import env_secret  # pydantic: imported only when needed

    url = url or os.environ.get("GRIDQ_HUB_URL")
    token = token or env_secret("GRIDQ_HUB_TOKEN")
    if not (url and token):
        stack = local_stack()
        if stack:
            url = url or stack.get("hub_url")
            token = token or stack.get("admin_token")
    if not url:
        fail("no hub: set GRIDQ_HUB_URL and GRIDQ_HUB_TOKEN, or start one with `gridq up`")
    if not token:
        fail("no admin token: set GRIDQ_HUB_TOKEN")
    try:
        urls = parse_hub_urls(url)
        if len(urls) == 1:
            return urls[0], token
        from gridq.hubtls import CA_ENV, tls_context

        verify = tls_context(os.environ.get(CA_ENV))
        return first_answering(urls, verify=verify), token  # several hubs: the first up
    except ValueError as exc:
        fail(f"GRIDQ_HUB_URL: {exc}")


_last_redis_url = ""


def redis_location(url: str | None = None) -> str:
    """Redis URL for queue commands: flag, GRIDQ_REDIS_URL[_FILE], then the local stack's Redis."""
    from gridq.settings import env_secret

    url = url or env_secret("GRIDQ_REDIS_URL")
    if not url:
        stack = local_stack()
        url = stack.get("redis_url") if stack else None
    if not url:
        fail("no Redis: pass --redis-url or set GRIDQ_REDIS_URL, or start one with `gridq up`")
    global _last_redis_url
    _last_redis_url = url  # so a Redis error can name where (masked)
    return url


class HubClient:
    """A thin admin client for the hub's REST API."""

    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        import httpx

        from gridq.hubtls import CA_ENV, tls_context

        self.url = url
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            verify=tls_context(os.environ.get(CA_ENV)),
        )

    def request(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._http.request(method, path, **kw)
        if resp.status_code >= 400:
            fail(f"hub answered {resp.status_code} for {method} {path}: {_detail(resp)}")
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def close(self) -> None:
        self._http.close()


def _detail(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300] or resp.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        parts = []
        for d in detail:
            if isinstance(d, dict):
                loc = ".".join(str(x) for x in d.get("loc", []) if x != "body")
                parts.append(f"{loc}: {d.get('msg')}" if loc else str(d.get("msg")))
            else:
                parts.append(str(d))
        return "; ".join(parts)
    return str(detail)


def hub_client(url: str | None = None, token: str | None = None) -> HubClient:
    u, t = hub_location(url, token)
    return HubClient(u, t)
