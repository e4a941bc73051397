"""Checks of the hub from this machine: reachable, /health, token, clock skew; and the
bind port a hub is about to use (free, or who holds it)."""

from __future__ import annotations

import errno
import os
import socket
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from gridq.doctor.checks import Check, fail, ok, warn
from gridq.hubtls import CA_ENV, tls_context, untrusted, untrusted_message

SKEW_WARN = 5.0
SKEW_FAIL = 30.0
TARGET = "hub"


def _split_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bind must be HOST:PORT, e.g. 0.0.0.0:8080, not {bind!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def check_hub(
    url: str, token: str | None, timeout: float = 5.0
) -> tuple[list[Check], httpx.Client | None]:
    """Reachable, /health, token, clock. Returns the results and, when the token is
    accepted, an authenticated client for further calls (the caller closes it)."""
    target = f"hub {url}"
    out: list[Check] = []
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx.Client(
        base_url=url, headers=headers, timeout=timeout, verify=tls_context(os.environ.get(CA_ENV))
    )
    try:
        t0 = time.time()
        resp = http.get("/health")
        t1 = time.time()
    except httpx.HTTPError as exc:
        http.close()
        out.append(_unreachable(url, exc, target))
        return out, None
    out.append(ok("hub.reachable", f"answered in {(t1 - t0) * 1000:.0f} ms", target))
    out.append(_health(resp, target))
    out.append(_clock(resp, (t0 + t1) / 2, target))
    if not token:
        out.append(
            fail(
                "hub.token",
                "no admin token configured",
                "Set GRIDQ_HUB_TOKEN (or pass --token) to the hub's admin token.",
                target,
            )
        )
        http.close()
        return out, None
    try:
        r = http.get("/api/tasks")
    except httpx.HTTPError as exc:
        out.append(
            fail("hub.token", f"GET /api/tasks failed: {exc}", "Check the hub's logs.", target)
        )
        http.close()
        return out, None
    if r.status_code in (401, 403):
        out.append(
            fail(
                "hub.token",
                f"the hub answered {r.status_code}: the token is wrong",
                "Set GRIDQ_HUB_TOKEN (or --token) to the admin token the hub was started with.",
                target,
            )
        )
        http.close()
        return out, None
    if r.status_code >= 400:
        out.append(
            fail(
                "hub.token",
                f"GET /api/tasks answered {r.status_code}",
                "Check the hub's logs for the error.",
                target,
            )
        )
        http.close()
        return out, None
    out.append(ok("hub.token", "accepted", target))
    return out, http


def _unreachable(url: str, exc: Exception, target: str) -> Check:
    text = str(exc) or type(exc).__name__
    why = untrusted(exc)
    if why:
        return fail("hub.tls", untrusted_message(why), f"Set {CA_ENV}.", target)
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    if isinstance(exc, httpx.ConnectError) and (
        "Name or service not known" in text
        or "nodename nor servname" in text
        or "resolution" in text
    ):
        return fail(
            "hub.reachable",
            f"the hub's host in {url} does not resolve",
            "Correct GRIDQ_HUB_URL (--hub-url) or make the name resolvable from this machine.",
            target,
        )
    if isinstance(exc, httpx.ConnectError) and "refused" in text.lower():
        return fail(
            "hub.reachable",
            f"nothing accepts connections at {where}",
            "Start the hub (gridq hub / gridq up) or correct GRIDQ_HUB_URL's host and port.",
            target,
        )
    if isinstance(exc, httpx.TimeoutException):
        return fail(
            "hub.reachable",
            f"no answer from {where} within the timeout",
            "Open the hub's port in the firewall or cloud security group, or correct GRIDQ_HUB_URL.",
            target,
        )
    return fail(
        "hub.reachable",
        f"cannot reach the hub at {url}: {text}",
        "Check GRIDQ_HUB_URL and that the hub runs and is reachable from this machine.",
        target,
    )


def _health(resp: httpx.Response, target: str) -> Check:
    body: Any
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.status_code == 200 and (not isinstance(body, dict) or body.get("status", "ok") == "ok"):
        version = body.get("version") if isinstance(body, dict) else None
        return ok("hub.health", f"ok{f' (gridq {version})' if version else ''}", target)
    if not isinstance(body, dict) or "status" not in body:
        return fail(
            "hub.health",
            f"/health answered {resp.status_code} with no gridq health document (another program on that port?)",
            "Point GRIDQ_HUB_URL at the gridq hub, not at another web server.",
            target,
        )
    return fail(
        "hub.health",
        f"/health answered {resp.status_code}: {body.get('redis') or body.get('status')}",
        "Make the hub's Redis (GRIDQ_HUB_REDIS_URL) reachable from the hub; see the Redis checks.",
        target,
    )


def _clock(resp: httpx.Response, local: float, target: str) -> Check:
    server: float | None = None
    precision = 1.0
    try:
        body = resp.json()
        if isinstance(body, dict) and isinstance(body.get("server_time"), int | float):
            server = float(body["server_time"])
            precision = 0.0
    except ValueError:
        pass
    if server is None:
        date = resp.headers.get("date")
        if not date:
            return warn(
                "hub.clock",
                "the hub sent no Date header, so the clock skew is unknown",
                "Run NTP (chrony / systemd-timesyncd) on every machine of the grid.",
                target,
            )
        try:
            server = parsedate_to_datetime(date).timestamp() + 0.5  # Date has 1 s resolution
        except (TypeError, ValueError):
            return warn(
                "hub.clock", f"unreadable Date header {date!r}", "Run NTP on the hub.", target
            )
    skew = local - server
    # Date headers are truncated to the second: differences under that are noise.
    shown = 0.0 if abs(skew) <= precision else skew
    saw = f"this machine's clock is {abs(shown):.1f} s {'ahead of' if shown > 0 else 'behind'} the hub's"
    if abs(shown) >= SKEW_FAIL:
        return fail(
            "hub.clock",
            saw + " (job leases and heartbeats rely on clocks within seconds)",
            "Synchronise the clocks with NTP (chrony or systemd-timesyncd) on this machine and the hub.",
            target,
        )
    if abs(shown) >= SKEW_WARN:
        return warn(
            "hub.clock", saw, "Synchronise the clocks with NTP on this machine and the hub.", target
        )
    return ok("hub.clock", saw if shown else "in step (within a second)", target)


def port_holder(port: int) -> str | None:
    """Who listens on TCP ``port`` on this machine: "name (pid N)", "another process", or None."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, PermissionError, OSError):
        return "another process (run as root to see which)"
    pids = {
        c.pid for c in conns if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
    }
    if not pids:
        return None
    names = []
    for pid in sorted(p for p in pids if p is not None):
        try:
            proc = psutil.Process(pid)
            names.append(f"{proc.name()} (pid {pid}: {' '.join(proc.cmdline())[:80]})")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            names.append(f"pid {pid}")
    if None in pids and not names:
        return "another process (run as root to see which)"
    return ", ".join(names)


def _is_gridq_hub(holder: str) -> bool:
    return "gridq" in holder and " hub" in holder


def check_bind_port(bind: str) -> Check:
    """Can a hub listen on ``bind`` (HOST:PORT)? If not, who holds the port."""
    target = f"hub bind {bind}"
    try:
        host, port = _split_bind(bind)
    except ValueError as exc:
        return fail("hub.bind-port", str(exc), "Use --bind HOST:PORT, e.g. 0.0.0.0:8080.", target)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        # uvicorn sets SO_REUSEADDR too: TIME_WAIT leftovers do not count as taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(1)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            holder = port_holder(port) or "another process"
            if _is_gridq_hub(holder):
                return ok(
                    "hub.bind-port", f"port {port} is held by the gridq hub: {holder}", target
                )
            return fail(
                "hub.bind-port",
                f"port {port} is already in use by {holder}",
                f"Stop that process or start the hub on another port (gridq hub --bind {host}:PORT).",
                target,
            )
        if exc.errno == errno.EACCES:
            return fail(
                "hub.bind-port",
                f"not allowed to listen on port {port} (ports below 1024 need privileges)",
                "Use a port of 1024 or above, or grant CAP_NET_BIND_SERVICE.",
                target,
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            return fail(
                "hub.bind-port",
                f"{host} is not an address of this machine",
                "Bind to 0.0.0.0 or one of this machine's addresses.",
                target,
            )
        return fail(
            "hub.bind-port", f"cannot listen on {bind}: {exc}", "Choose another --bind.", target
        )
    finally:
        s.close()
    return ok("hub.bind-port", f"port {port} is free", target)
