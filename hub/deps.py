"""Every FastAPI dependency of the hub, in one place: settings, store, authentication.

Four credentials, four scopes (the token checks are in auth.py):
- the admin token (GRIDQ_HUB_TOKEN): the user API, /metrics, service discovery;
- the viewer token (GRIDQ_HUB_VIEWER_TOKEN): the GETs of those;
- the node join token (GRIDQ_NODE_TOKEN): only POST /api/node/register;
- a node's own secret (issued at registration): only that node's heartbeat and leave.
Every comparison is constant-time (hmac.compare_digest); no token is ever logged.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .audit import AuditDep, Recorder
from .auth import (
    AdminDep,
    ApiDep,
    NodeJoinDep,
    Principal,
    PrincipalDep,
    ReaderDep,
    unauthorized,
)
from .config import HubSettings
from .store import Store

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


def node_secret(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(node_secret_bearer)],
) -> str:
    """The bearer value of a node call; the store checks it against the node's hash."""
    if not creds or not creds.credentials:
        raise unauthorized("missing Authorization: Bearer <node secret>")
    return creds.credentials


NodeSecretDep = Annotated[str, Depends(node_secret)]


def same(given: str, expected: str) -> bool:
    """Constant-time string comparison (the dashboard's CSRF check)."""
    return hmac.compare_digest(given.encode(), expected.encode())


__all__ = [
    "AdminDep",
    "ApiDep",
    "AuditDep",
    "NodeJoinDep",
    "NodeSecretDep",
    "Principal",
    "PrincipalDep",
    "ReaderDep",
    "Recorder",
    "same",
    "SettingsDep",
    "StoreDep",
    "unauthorized",
]
