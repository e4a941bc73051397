"""Recording a change in the audit trail (store/audit.py) from a request.

Routes take ``audit: AuditDep`` and call ``await audit("task.create", name)``; anything
else that changes the grid on a user's behalf (the dashboard, schedules, job cancel)
calls ``record(request, action, target)``. The actor and the token index come from the
principal the auth dependency left on the request (auth.py), the client address from
the failed-login middleware (ratelimit.py); never a token value.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from .auth import Principal


def client_of(request: Request) -> str | None:
    addr: str | None = getattr(request.state, "client_addr", None)
    if addr is None and request.client:
        addr = request.client.host
    return addr


async def record(
    request: Request,
    action: str,
    target: str,
    detail: str | None = None,
    principal: Principal | None = None,
) -> None:
    p: Principal | None = principal or getattr(request.state, "principal", None)
    await request.app.state.store.audit.record(
        actor=p.actor if p else "anonymous",
        token_index=p.token_index if p else None,
        action=action,
        target=target,
        client=client_of(request),
        detail=detail,
    )


class Recorder:
    """``await audit(action, target)``: one audit entry for this request."""

    def __init__(self, request: Request) -> None:
        self.request = request

    async def __call__(self, action: str, target: str, **kw: Any) -> None:
        await record(self.request, action, target, **kw)


AuditDep = Annotated[Recorder, Depends(Recorder)]
