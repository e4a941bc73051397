"""The dashboard's actions (POST): login, logout, and changes to tasks, dead letters and
nodes. Every change needs a session, its CSRF token (form field ``csrf`` or header
``X-CSRF-Token``), a same-site Origin when the browser sends one, and the admin role
(a viewer gets 403). Changes run the REST handlers (hub/ui/data.py), so the dashboard
and the API behave alike; after a change the browser is sent back (303) to the page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from gridq.redisurl import mask_text

from . import data, deadletters, render, session
from .session import Session

router = APIRouter(prefix="/ui", include_in_schema=False)

MAX_FORM = 16 * 1024


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form (the only kind these pages send), without python-multipart."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise HTTPException(413, "form too large")
    return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}


async def _authorised(request: Request, form: dict[str, str]) -> Session | Response:
    s = await session.load(request)
    if s is None:
        return render.to_login(request)
    if not session.same_origin(request):
        return render.error(request, s, 403, "Refused: the request came from another site.")
    given = request.headers.get(session.CSRF_HEADER) or form.get(session.CSRF_FIELD)
    if not session.csrf_ok(s, given):
        return render.error(
            request, s, 403, "Refused: missing or wrong CSRF token. Reload the page and retry."
        )
    if not s.can_change:
        return render.error(request, s, 403, "Refused: the viewer token may look, not change.")
    return s


def _back(to: str, note: str) -> RedirectResponse:
    sep = "&" if "?" in to else "?"
    return RedirectResponse(f"{to}{sep}note={quote(note, safe='')}", 303, headers=render.HEADERS)


async def _act(
    request: Request, to: str, act: Callable[[dict[str, str]], Awaitable[str]]
) -> Response:
    form = await _form(request)
    s = await _authorised(request, form)
    if not isinstance(s, Session):
        return s
    try:
        note = await act(form)
    except HTTPException as exc:
        return render.error(request, s, exc.status_code, str(exc.detail))
    except ValueError as exc:
        return render.error(request, s, 422, mask_text(str(exc)))
    return _back(to, note)


# --- login / logout ---------------------------------------------------------------------


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    nxt = render.safe_next(form.get("next"))
    if not session.same_origin(request):
        return render.page(request, "login.html", None, 403, next=nxt, failed="other site")
    role = session.role_for(request, form.get("token", ""))
    if role is None:
        # The token given is never echoed back into the page.
        return render.page(request, "login.html", None, 401, next=nxt, failed="wrong token")
    resp = RedirectResponse(nxt, 303, headers=render.HEADERS)
    await session.start(request, resp, role)
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await _form(request)
    s = await session.load(request)
    resp = RedirectResponse("/ui/login", 303, headers=render.HEADERS)
    if s is not None and session.csrf_ok(s, form.get(session.CSRF_FIELD)):
        await session.end(data.store_of(request), s, resp)
    return resp


# --- tasks ------------------------------------------------------------------------------


def _task_url(name: str) -> str:
    return f"/ui/tasks/{quote(name, safe='')}"


@router.post("/tasks/{name}/replicas")
async def replicas(request: Request, name: str) -> Response:
    async def act(form: dict[str, str]) -> str:
        raw = form.get("replicas", "").strip()
        if not raw.isdigit():
            raise ValueError("replicas must be a whole number, 0 or more")
        n = int(raw)
        await data.set_replicas(data.store_of(request), data.settings_of(request), name, n)
        return f"replicas set to {n}"

    return await _act(request, _task_url(name), act)


@router.post("/tasks/{name}/{what}")
async def task_action(request: Request, name: str, what: str) -> Response:
    """pause or resume (declared after replicas, which it would catch)."""
    if what not in ("pause", "resume"):
        raise HTTPException(404)

    async def act(form: dict[str, str]) -> str:
        change = data.pause_task if what == "pause" else data.resume_task
        await change(data.store_of(request), name)
        return f"{what}d"

    return await _act(request, _task_url(name), act)


async def _dead_action(request: Request, name: str, what: str, form: dict[str, str]) -> str:
    store = data.store_of(request)
    rec = await data.task_record(store, name)
    if rec is None:
        raise HTTPException(404, f"no task named {name!r}")
    if rec.spec.kind != "gridq":
        raise HTTPException(409, "Celery tasks have no gridq dead-letter list")
    q = data.task_queue(store, rec.spec)
    error_type = form.get("error_type", "")

    def run() -> Any:
        if what == "one":
            index = int(form.get("index", "-1"))
            return deadletters.requeue_one(q, index, form.get("digest", ""))
        if what == "filtered":
            if not error_type:
                raise ValueError("choose an error type to requeue the filtered set")
            return deadletters.requeue_filtered(q, error_type)
        if what == "all":
            return deadletters.requeue_all(q)
        if form.get("confirm", "") != name:
            raise ValueError("purge not done: type the task's name to confirm")
        return deadletters.purge(q)

    result = await anyio.to_thread.run_sync(run)
    if what == "one":
        if not result:
            raise HTTPException(409, "that dead letter is gone (requeued or purged meanwhile)")
        text = "requeued 1 dead letter"
    elif what == "purge":
        text = f"purged {result} dead letter(s)"
    else:
        text = f"requeued {result} dead letter(s)" + (
            f" of type {error_type}" if what == "filtered" else ""
        )
    await data.event(store, f"task {name} {text} (dashboard)")
    return text


@router.post("/tasks/{name}/dead/{what}")
async def dead(request: Request, name: str, what: str) -> Response:
    if what not in ("one", "filtered", "all", "purge"):
        raise HTTPException(404)

    async def act(form: dict[str, str]) -> str:
        return await _dead_action(request, name, what, form)

    return await _act(request, _task_url(name), act)


# --- nodes ------------------------------------------------------------------------------


@router.post("/nodes/{node_id}/stop")
async def stop(request: Request, node_id: str) -> Response:
    async def act(form: dict[str, str]) -> str:
        await data.stop_node(data.store_of(request), node_id)
        return "drain and stop requested"

    return await _act(request, f"/ui/nodes/{quote(node_id, safe='')}", act)
