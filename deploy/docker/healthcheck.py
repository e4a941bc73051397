#!/usr/bin/env python3
"""Container HEALTHCHECK for the gridq images: ``gridq-healthcheck hub|node|worker``.

Asks the running process itself (its HTTP /health) rather than checking that a PID
exists: a hub whose Redis is gone, or a wedged worker, must show as unhealthy.
Standard library only, so it starts fast and needs no curl in the image.
Exit 0 healthy, 1 unhealthy (Docker's convention).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

# Where each part serves /health when nothing says otherwise.
DEFAULT_PORTS = {"hub": 8080, "node": 9101, "worker": 9100}


def _cmdline_flag(flag: str) -> str | None:
    """The value of FLAG on PID 1's command line (dumb-init -- gridq hub --bind X)."""
    try:
        with open("/proc/1/cmdline", "rb") as f:
            args = f.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _port_of(bind: str | None) -> int | None:
    if not bind:
        return None
    try:
        return int(bind.rsplit(":", 1)[-1])
    except ValueError:
        return None


def port_for(part: str) -> int:
    if part == "hub":
        port = _port_of(_cmdline_flag("--bind")) or _port_of(os.environ.get("GRIDQ_HUB_BIND"))
    elif part == "node":
        # The agent serves /metrics and /health on GRIDQ_NODE_METRICS_BIND.
        port = _port_of(_cmdline_flag("--metrics-bind")) or _port_of(
            os.environ.get("GRIDQ_NODE_METRICS_BIND")
        )
    else:
        raw = os.environ.get("GRIDQ_METRICS_PORT")
        port = int(raw) if raw else None
    return port or DEFAULT_PORTS[part]


def main(argv: list[str]) -> int:
    part = argv[1] if len(argv) > 1 else ""
    if part not in DEFAULT_PORTS:
        print("usage: gridq-healthcheck hub|node|worker", file=sys.stderr)
        return 2
    if part == "node" and os.environ.get("GRIDQ_NODE_METRICS_BIND", None) == "":
        # The operator turned the agent's endpoint off: nothing to ask.
        print("node metrics/health endpoint disabled (GRIDQ_NODE_METRICS_BIND='')")
        return 0
    url = f"http://127.0.0.1:{port_for(part)}/health"
    try:
        with urllib.request.urlopen(url, timeout=4) as r:
            ok = 200 <= r.status < 300
            print(f"{url}: {r.status}")
            return 0 if ok else 1
    except urllib.error.HTTPError as e:
        print(f"{url}: {e.code}", file=sys.stderr)
    except OSError as e:
        print(f"{url}: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
