"""The real `gridq hub` process keeps a node's idle connection open across a heartbeat
interval (uvicorn's own default, 5 s, equals the default interval: the hub used to close
each node's connection just as its next heartbeat went out)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support import free_port

GRIDQ = str(Path(sys.executable).parent / "gridq")


def _get(sock: socket.socket, path: str) -> bytes:
    """One request on the open connection: the status line, or b"" if it was closed."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: hub\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head.split(b"\r\n", 1)[0]


def test_idle_keep_alive_outlives_the_heartbeat_interval(make_redis: Any, tmp_path: Path) -> None:
    srv = make_redis()
    port = free_port()
    env = dict(os.environ)
    env.update(
        GRIDQ_HUB_REDIS_URL=srv.url,
        GRIDQ_HUB_TOKEN="adm-" + secrets.token_hex(16),
        GRIDQ_NODE_TOKEN="nod-" + secrets.token_hex(16),
        GRIDQ_HUB_HEARTBEAT_INTERVAL="5",
        GRIDQ_HUB_LOG_LEVEL="warning",
    )
    with open(tmp_path / "hub.log", "wb") as log:
        proc = subprocess.Popen(
            [GRIDQ, "hub", "--bind", f"127.0.0.1:{port}"], env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "hub.log").read_text()
                assert time.monotonic() < deadline, "hub did not listen"
                time.sleep(0.1)
        with sock:
            assert _get(sock, "/health") == b"HTTP/1.1 200 OK"
            time.sleep(5.5)  # one default heartbeat interval, plus margin, idle
            assert _get(sock, "/health") == b"HTTP/1.1 200 OK"
    finally:
        proc.terminate()
        proc.wait(15)
