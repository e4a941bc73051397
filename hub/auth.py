"""Who is calling: the hub's token sets and the FastAPI dependencies that check them.

Three token settings, three roles (docs/security.md):
- admin (GRIDQ_HUB_TOKEN): the whole user API;
- viewer (GRIDQ_HUB_VIEWER_TOKEN): every GET of the user API, no change (403 naming why);
- node (GRIDQ_NODE_TOKEN): only POST /api/node/register.
Each setting takes several comma-separated values, all valid at once (rotation). A
given token is compared in constant time with every value of every set, without
stopping at the first match, so the time taken does not tell which set or value it
matched. A principal carries the index of the value used, never the value.

``identify(tokens, token)`` is the one check, for routes and for the dashboard's login.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .config import HubSettings

Role = Literal["admin", "viewer", "node"]
READ_METHODS = frozenset({"GET", "HEAD"})

api_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    description="GRIDQ_HUB_TOKEN (admin), or GRIDQ_HUB_VIEWER_TOKEN for reads",
)
node_join_bearer = HTTPBearer(
    auto_error=False, scheme_name="NodeJoinToken", description="GRIDQ_NODE_TOKEN"
)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``token_index`` is the position of the value used in its
    comma-separated setting (None: no token was needed, or a node's own secret)."""

    role: Role
    token_index: int | None
    node_id: str | None = None

    @property
    def actor(self) -> str:
        """As the audit trail writes it: ``admin``, ``viewer`` or ``node:<id>``."""
        if self.role == "node" and self.node_id:
            return f"node:{self.node_id}"
        return self.role


@dataclass(frozen=True)
class TokenSets:
    """The token settings, parsed once at start-up (``app.state.tokens``)."""

    admin: tuple[str, ...]
    viewer: tuple[str, ...]
    node: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: HubSettings) -> TokenSets:
        return cls(settings.admin_tokens(), settings.viewer_tokens(), settings.join_tokens())

    def match(self, token: str) -> Principal | None:
        """The role and index ``token`` matches, or None. Every value is compared."""
        given = token.encode()
        found: Principal | None = None
        for role, values in (("admin", self.admin), ("viewer", self.viewer), ("node", self.node)):
            for i, value in enumerate(values):
                if hmac.compare_digest(given, value.encode()) and found is None:
                    found = Principal(role, i)  # type: ignore[arg-type]
        return found


def identify(tokens: TokenSets, token: str) -> Principal | None:
    """An admin or viewer principal for ``token`` (a user's login), else None.

    The node join token is not a user: it identifies nobody here."""
    p = tokens.match(token)
    return p if p is not None and p.role != "node" else None


def tokens_of(request: Request) -> TokenSets:
    tokens: TokenSets = request.app.state.tokens
    return tokens


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _forbidden(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=detail)


def _remember(request: Request, p: Principal) -> Principal:
    # The audit reads it back (hub/audit.py), whichever dependency authenticated.
    request.state.principal = p
    return p


def _user(request: Request, creds: HTTPAuthorizationCredentials | None, write: bool) -> Principal:
    tokens = tokens_of(request)
    if not tokens.admin:  # only possible with --insecure-dev
        return _remember(request, Principal("admin", None))
    p = tokens.match(creds.credentials) if creds else None
    if p is not None and p.role == "admin":
        return _remember(request, p)
    if p is not None and p.role == "viewer":
        if not write:
            return _remember(request, p)
        raise _forbidden(
            "the viewer token (GRIDQ_HUB_VIEWER_TOKEN) reads and changes nothing;"
            " this change needs the admin token (GRIDQ_HUB_TOKEN)"
        )
    if p is not None and p.role == "node":
        raise _forbidden("this is the node join token; the admin API needs GRIDQ_HUB_TOKEN")
    raise unauthorized(
        "missing or wrong admin token (Authorization: Bearer <GRIDQ_HUB_TOKEN>)"
        if creds
        else "missing Authorization: Bearer <GRIDQ_HUB_TOKEN>"
    )


Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(api_bearer)]


def require_admin(request: Request, creds: Creds) -> Principal:
    """The admin token: every change."""
    return _user(request, creds, write=True)


def require_reader(request: Request, creds: Creds) -> Principal:
    """The admin or the viewer token: reads."""
    return _user(request, creds, write=False)


def require_api(request: Request, creds: Creds) -> Principal:
    """A user API router's check: GET/HEAD need a reader, every other method the admin.
    On a whole router, no write endpoint can forget its check."""
    return _user(request, creds, write=request.method not in READ_METHODS)


def require_node_join(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(node_join_bearer)],
) -> Principal:
    tokens = tokens_of(request)
    if not tokens.node:  # only possible with --insecure-dev
        return _remember(request, Principal("node", None))
    p = tokens.match(creds.credentials) if creds else None
    if p is not None and p.role == "node":
        return _remember(request, p)
    raise unauthorized(
        "missing or wrong node join token (Authorization: Bearer <GRIDQ_NODE_TOKEN>)"
    )


AdminDep = Depends(require_admin)
ReaderDep = Depends(require_reader)
ApiDep = Depends(require_api)
NodeJoinDep = Depends(require_node_join)
PrincipalDep = Annotated[Principal, Depends(require_api)]
