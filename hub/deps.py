"""Every FastAPI dependency of the hub, in one place: settings, store, authentication.

Four credentials, four scopes:
- the admin token (GRIDQ_HUB_TOKEN): the user API, /metrics, service discovery;
- the viewer token (GRIDQ_HUB_VIEWER_TOKEN, optional): the same, read only (GET/HEAD;
  any change is 403);
- the node join token (GRIDQ_NODE_TOKEN): only POST /api/node/register;
- a node's own secret (issued at registration): only that node's heartbeat and leave.
Every comparison is constant-time (hmac.compare_digest); no token is ever logged.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .config import HubSettings
from .store import Store

admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="GRIDQ_HUB_TOKEN")
node_join_bearer = HTTPBearer(
    auto_error=False, scheme_name="NodeJoinToken", description="GRIDQ_NODE_TOKEN"
)
node_secret_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="NodeSecret",
    description="the per-node secret returned by POST /api/node/register",
)


def get_settings(request: Request) -> HubSettings:
    settings: HubSettings = request.app.state.settings
    return settings


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


SettingsDep = Annotated[HubSettings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]


def same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


READ_METHODS = ("GET", "HEAD")


def require_admin(
    request: Request,
    settings: SettingsDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> None:
    expected = settings.admin_token()
    if expected is None:  # only possible with --insecure-dev
        return
    given = creds.credentials if creds else ""
    if same(given, expected):
        return
    viewer = settings.viewer()
    if viewer and same(given, viewer):
        if request.method in READ_METHODS:
            return
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="the viewer token (GRIDQ_HUB_VIEWER_TOKEN) may read, not change",
        )
    join = settings.join_token()
    if join and same(given, join):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="this is the node join token; the admin API needs GRIDQ_HUB_TOKEN",
        )
    raise unauthorized(
        "missing or wrong admin token (Authorization: Bearer <GRIDQ_HUB_TOKEN>)"
        if creds
        else "missing Authorization: Bearer <GRIDQ_HUB_TOKEN>"
    )


def require_node_join(
    settings: SettingsDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(node_join_bearer)],
) -> None:
    expected = settings.join_token()
    if expected is None:  # only possible with --insecure-dev
        return
    if creds and same(creds.credentials, expected):
        return
    raise unauthorized(
        "missing or wrong node join token (Authorization: Bearer <GRIDQ_NODE_TOKEN>)"
    )


def node_secret(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(node_secret_bearer)],
) -> str:
    """The bearer value of a node call; the store checks it against the node's hash."""
    if not creds or not creds.credentials:
        raise unauthorized("missing Authorization: Bearer <node secret>")
    return creds.credentials


AdminDep = Depends(require_admin)
NodeJoinDep = Depends(require_node_join)
NodeSecretDep = Annotated[str, Depends(node_secret)]
