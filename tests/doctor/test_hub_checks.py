"""Hub checks: a real hub over HTTP (uvicorn), a real socket holding the port."""

from __future__ import annotations

import os
import socket

from doctor_helpers import by_name

from gridq.doctor.hub_checks import check_bind_port, check_hub


def test_port_taken_names_this_process() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        c = check_bind_port(f"127.0.0.1:{port}")
    assert c.status == "fail"
    assert f"pid {os.getpid()}" in c.saw and "in use" in c.saw
    assert "--bind" in c.fix


def test_free_port_is_ok() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert check_bind_port(f"127.0.0.1:{port}").status == "ok"


def test_wrong_token_says_so(live_hub) -> None:  # type: ignore[no-untyped-def]
    res, http = check_hub(live_hub.url, "not-the-token-at-all")
    assert http is None
    assert by_name(res, "hub.reachable").status == "ok"
    assert by_name(res, "hub.health").status == "ok"
    t = by_name(res, "hub.token")
    assert t.status == "fail" and "the token is wrong" in t.saw and "GRIDQ_HUB_TOKEN" in t.fix
    assert "not-the-token" not in " ".join(r.saw + r.fix for r in res)


def test_right_token_and_clock(live_hub) -> None:  # type: ignore[no-untyped-def]
    from doctor_helpers import ADMIN

    res, http = check_hub(live_hub.url, ADMIN)
    assert http is not None
    http.close()
    assert all(r.status == "ok" for r in res), res
    assert by_name(res, "hub.clock").status == "ok"


def test_hub_not_running() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res, http = check_hub(f"http://127.0.0.1:{port}", "x", timeout=2)
    assert http is None and res[0].name == "hub.reachable" and res[0].status == "fail"
    assert "Start the hub" in res[0].fix
