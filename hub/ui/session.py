"""Dashboard logins: sessions in the hub's Redis (shared by replicas), CSRF tokens.

The browser holds only a random session id in an HttpOnly, SameSite=Strict cookie
(Secure behind https). Redis holds the role and the session's CSRF token under the
SHA-256 of that id, with the session's lifetime as TTL: a Redis dump yields no usable
cookie, and an expired session is simply gone. The admin or viewer token is read once
from the login form and never stored, echoed or put in a URL.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from fastapi import Request, Response

from gridq import keys

from ..auth import identify, tokens_of
from ..deps import same
from ..store import Store
from . import data

COOKIE = "gridq_ui"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
Role = Literal["admin", "viewer"]


@dataclass
class Session:
    digest: str
    role: Role
    csrf: str

    @property
    def can_change(self) -> bool:
        return self.role == "admin"


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def role_for(request: Request, token: str) -> Role | None:
    """The role ``token`` grants, or None: the API's own check (hub/auth.py), so every
    value of a comma-separated token setting logs in, and the node join token never."""
    tokens = tokens_of(request)
    if not tokens.admin:  # --insecure-dev without a token: the API is open, so is this
        return "admin"
    p = identify(tokens, token) if token else None
    if p is None:
        return None
    return "admin" if p.role == "admin" else "viewer"


def is_https(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return (proto or request.url.scheme) == "https"


async def start(request: Request, response: Response, role: Role) -> None:
    store = data.store_of(request)
    ttl = int(data.settings_of(request).ui_session_ttl)
    sid = secrets.token_urlsafe(32)
    key = keys.hub_ui_session(_digest(sid))
    pipe = data.hub_redis(store).pipeline(transaction=True)
    pipe.hset(key, mapping={"role": role, "csrf": secrets.token_urlsafe(32)})
    pipe.expire(key, ttl)
    await pipe.execute()
    response.set_cookie(
        COOKIE,
        sid,
        max_age=ttl,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


async def load(request: Request) -> Session | None:
    sid = request.cookies.get(COOKIE)
    if not sid or len(sid) > 100:
        return None
    digest = _digest(sid)
    rec = await data.hub_redis(data.store_of(request)).hgetall(keys.hub_ui_session(digest))
    role = rec.get("role")
    if role not in ("admin", "viewer") or not rec.get("csrf"):
        return None
    return Session(digest=digest, role=role, csrf=rec["csrf"])


async def end(store: Store, session: Session, response: Response) -> None:
    await data.hub_redis(store).delete(keys.hub_ui_session(session.digest))
    response.delete_cookie(COOKIE, path="/ui")


def csrf_ok(session: Session, given: str | None) -> bool:
    return bool(given) and same(given or "", session.csrf)


def same_origin(request: Request) -> bool:
    """Defence in depth next to the CSRF token: a browser's Origin, when sent, must be us."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host
