"""A free TCP port, for the local stack, the node's worker metrics ports, tests and
benchmarks.

The port is free when this returns, not reserved: another process may take it before
the caller binds it. Callers that bind at once (a child server started right away)
accept that small window.
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at ``host`` (0.0.0.0: on every interface)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
