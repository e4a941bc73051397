"""The client address of a request, for the failed-login limit and the audit trail.

By default it is the direct peer (the TCP connection's source): a header cannot be
trusted, since any client can send one. Behind reverse proxies, list them in
``trusted_proxies`` (GRIDQ_HUB_TRUSTED_PROXIES): when the peer is one of them, the
client is the right-most X-Forwarded-For address that is not a trusted proxy (the
left part of that header is whatever the client wrote, and is ignored).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(proxies: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(addr: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(scope: Mapping[str, Any], trusted: tuple[Network, ...]) -> str:
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    forwarded: list[str] = []
    for name, value in scope.get("headers") or ():
        if name == b"x-forwarded-for":
            forwarded += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    for addr in reversed(forwarded):
        if not _trusted(addr, trusted):
            return addr
    return forwarded[0] if forwarded else peer
