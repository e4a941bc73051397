"""HTTP client of the node protocol (gridq/nodeproto.py), the agent's only link to the hub.

Failures are typed so the agent can act on them: ``HubUnavailable`` (connection
refused, timeout, 5xx) is waited out with backoff while the workers keep running;
``HubRejected`` (a wrong join token) needs the operator. 401/410 on a heartbeat mean
the hub no longer knows this node: the client registers again, transparently.

Registration asks for the node's assignments (``?assignments=true``; a hub from before
ignores the parameter): the first contact of a run is then answered by the registration
alone, so the workers start one round trip sooner. ``answered_by_register`` tells the
agent that this answer has not reported the node's instances yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from gridq.errors import GridqError, PermanentError, TemporaryError
from gridq.hubtls import tls_context, untrusted, untrusted_message
from gridq.node.identity import Identity, IdentityStore
from gridq.nodeproto import (
    Heartbeat,
    HeartbeatResponse,
    NodeInfo,
    RegisterRequest,
    RegisterResponse,
)
from gridq.redisurl import mask_text

log = logging.getLogger("gridq.node")


class HubError(GridqError):
    """The hub could not serve a request of this node."""


class HubUnavailable(HubError, TemporaryError):
    """The hub could not be reached or failed (5xx): retry later."""


class HubRejected(HubError, PermanentError):
    """The hub refused us in a way retrying will not fix soon (bad join token, 4xx)."""


class HubClient:
    """Talks to one hub at a time. With several (``GRIDQ_HUB_URL=h1,h2``, all on one
    Redis) a request the current hub does not answer (no connection, timeout, 5xx) goes
    to the next one at once, so the node moves within the heartbeat that failed."""

    def __init__(
        self,
        hub_url: str | Sequence[str],
        token: str,
        store: IdentityStore,
        info: Callable[[], NodeInfo],
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        ca_file: Path | None = None,
    ) -> None:
        urls = [hub_url] if isinstance(hub_url, str) else list(hub_url)
        self.bases = [u.rstrip("/") for u in urls]
        self._current = 0
        # The identity names the whole list: it stays valid on any hub of it.
        self.hub_id = ",".join(self.bases)
        self._token = token
        self._registered_this_run = False
        self.store = store
        self.info = info
        self.identity: Identity = store.load()
        self.heartbeat_interval: float | None = None
        # True when the last heartbeat() was answered by the registration alone: the
        # hub has not seen this run's instances yet, so heartbeat again soon.
        self.answered_by_register = False
        # A dead hub must not eat the heartbeat interval: connect fast, then move on.
        t = httpx.Timeout(timeout, connect=min(timeout, 2.0)) if len(self.bases) > 1 else timeout
        self._clients = [
            httpx.Client(
                base_url=b,
                timeout=t,
                transport=transport,
                verify=tls_context(ca_file, "GRIDQ_NODE_CA_FILE"),
            )
            for b in self.bases
        ]

    @property
    def base(self) -> str:
        """The hub this node talks to now."""
        return self.bases[self._current]

    @property
    def node_id(self) -> str | None:
        return self.identity.node_id

    def close(self) -> None:
        for c in self._clients:
            c.close()

    # -- protocol ---------------------------------------------------------------------

    def register(self) -> RegisterResponse:
        ident = self.identity
        resume = ident.node_id and ident.secret and ident.hub_url in (self.hub_id, self.base)
        req = RegisterRequest(
            info=self.info(),
            node_id=ident.node_id if resume else None,
            secret=ident.secret if resume else None,
        )
        r = self._post("/api/node/register?assignments=true", self._token, req.model_dump_json())
        if resume and r.status_code in (401, 403, 404, 409, 410):
            # The hub forgot, deleted or no longer trusts our identity: ask for a fresh
            # one (a wrong join token then shows on that second attempt).
            self._forget()
            return self.register()
        if r.status_code in (401, 403):
            raise HubRejected(
                f"the hub at {self.base} refused the node token (HTTP {r.status_code}): "
                "check GRIDQ_NODE_TOKEN"
            )
        self._raise_for(r, "register")
        resp = RegisterResponse.model_validate_json(r.content)
        self.identity = Identity(
            agent_id=ident.agent_id, hub_url=self.hub_id, node_id=resp.node_id, secret=resp.secret
        )
        self.store.save(self.identity)
        self.heartbeat_interval = resp.heartbeat_interval
        self._registered_this_run = True
        return resp

    def heartbeat(self, hb: Heartbeat) -> HeartbeatResponse:
        # The first contact of every run goes through register (resuming the saved id):
        # the hub then knows the node is back, even one it saw leave.
        self.answered_by_register = False
        if not self._registered_this_run or not self.identity.node_id or not self.identity.secret:
            reg = self.register()
            if reg.assignments is not None and not hb.draining:
                # The hub sent the assignments with the registration: no need to wait
                # for a heartbeat answer to start the workers.
                self.answered_by_register = True
                return HeartbeatResponse(
                    node_id=reg.node_id,
                    spec_version=reg.spec_version or 0,
                    assignments=reg.assignments,
                    stop=False,
                    heartbeat_interval=reg.heartbeat_interval,
                    server_time=time.time(),  # the registration carries no hub clock
                )
        for attempt in (1, 2):
            r = self._post(
                f"/api/node/{self.identity.node_id}/heartbeat",
                self.identity.secret or "",
                hb.model_dump_json(),
            )
            if r.status_code in (401, 404, 410) and attempt == 1:
                log.warning(
                    "the hub no longer knows node %s (HTTP %s): registering again",
                    self.identity.node_id,
                    r.status_code,
                )
                if r.status_code == 410:
                    self._forget()
                self.register()
                continue
            self._raise_for(r, "heartbeat")
            resp = HeartbeatResponse.model_validate_json(r.content)
            self.heartbeat_interval = resp.heartbeat_interval
            return resp
        raise HubRejected("heartbeat refused right after registering")  # pragma: no cover

    def leave(self) -> None:
        if not self.identity.node_id or not self.identity.secret:
            return
        r = self._post(f"/api/node/{self.identity.node_id}/leave", self.identity.secret, "{}")
        if r.status_code not in (401, 404, 410):
            self._raise_for(r, "leave")

    # -- plumbing ---------------------------------------------------------------------

    def _forget(self) -> None:
        self.identity = Identity(agent_id=self.identity.agent_id, hub_url=self.hub_id)
        self.store.save(self.identity)

    def _post(self, path: str, bearer: str, body: str) -> httpx.Response:
        """POST to the current hub; on no answer or a 5xx, to the next ones in turn."""
        failure: HubUnavailable | None = None
        for _ in self.bases:
            try:
                r = self._clients[self._current].post(
                    path,
                    content=body,
                    headers={
                        "Authorization": f"Bearer {bearer}",
                        "Content-Type": "application/json",
                    },
                )
                if r.status_code < 500 or len(self.bases) == 1:
                    return r
                failure = HubUnavailable(f"hub at {self.base} failed: HTTP {r.status_code}")
            except httpx.HTTPError as exc:
                why = untrusted(exc)
                if why:
                    # Retrying will not make the certificate trusted: the operator must act.
                    raise HubRejected(
                        f"{untrusted_message(why, 'GRIDQ_NODE_CA_FILE')} (hub {self.base})"
                    ) from None
                # httpx messages name the URL, never the Authorization header; mask anyway.
                failure = HubUnavailable(
                    f"hub at {self.base} unreachable: {mask_text(str(exc) or type(exc).__name__, [bearer])}"
                )
            if len(self.bases) > 1:
                self._current = (self._current + 1) % len(self.bases)
                log.warning("%s: moving to the hub at %s", failure, self.base)
        assert failure is not None
        raise failure

    def _raise_for(self, r: httpx.Response, what: str) -> None:
        if r.status_code < 300:
            return
        detail = mask_text(r.text[:300], [self._token, self.identity.secret or ""])
        if r.status_code >= 500 or r.status_code == 429:
            raise HubUnavailable(f"hub {what} failed: HTTP {r.status_code}: {detail}")
        raise HubRejected(f"hub refused {what}: HTTP {r.status_code}: {detail}")
