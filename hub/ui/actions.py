"""The dashboard's actions (POST): login, logout, and changes to tasks, dead letters and
nodes. Every change needs a session, its CSRF token (form field ``csrf`` or header
``X-CSRF-Token``), a same-site Origin when the browser sends one, and the admin role
(a viewer gets 403). Changes run the REST handlers (hub/ui/data.py), so the dashboard
and the API behave alike; after a change the browser is sent back (303) to the page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from gridq.redisurl import mask_text

from ..audit import Recorder
from ..auth import Principal
from . import data, render, session
from . import dead_letters_api as dead_api
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
    # For the audit trail: the session's role (a session does not keep which token
    # value it was opened with).
    request.state.principal = Principal(s.role, None)
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
        await data.set_replicas(
            data.store_of(request), data.settings_of(request), name, n, Recorder(request)
        )
        return f"replicas set to {n}"

    return await _act(request, _task_url(name), act)


@router.post("/tasks/{name}/{what}")
async def task_action(request: Request, name: str, what: str) -> Response:
    """pause or resume (declared after replicas, which it would catch)."""
    if what not in ("pause", "resume"):
        raise HTTPException(404)

    async def act(form: dict[str, str]) -> str:
        change = data.pause_task if what == "pause" else data.resume_task
        await change(data.store_of(request), name, Recorder(request))
        return f"{what}d"

    return await _act(request, _task_url(name), act)


async def _dead_action(request: Request, name: str, what: str, form: dict[str, str]) -> str:
    store = data.store_of(request)
    if what == "purge":
        done = await dead_api.purge(name, store, Recorder(request), form.get("confirm", ""))
        return done.message
    if what == "one":
        index = form.get("index", "")
        body = dead_api.Requeue(
            index=int(index) if index.isdigit() else -1, digest=form.get("digest", "")
        )
    elif what == "filtered":
        body = dead_api.Requeue(error_type=form.get("error_type") or None)
    else:
        body = dead_api.Requeue(all=True)
    return (await dead_api.requeue(name, body, store, Recorder(request))).message


@router.post("/tasks/{name}/dead/{what}")
async def dead(request: Request, name: str, what: str) -> Response:
    if what not in ("one", "filtered", "all", "purge"):
        raise HTTPException(404)

    async def act(form: dict[str, str]) -> str:
        return await _dead_action(request, name, what, form)

    return await _act(request, _task_url(name), act)


# --- schedules --------------------------------------------------------------------------


@router.post("/schedules/{name}/{what}")
async def schedule_action(request: Request, name: str, what: str) -> Response:
    """pause, resume or run now."""
    if what not in ("pause", "resume", "run"):
        raise HTTPException(404)

    async def act(form: dict[str, str]) -> str:
        store = data.store_of(request)
        if what == "run":
            return f"{name}: job {await data.run_schedule(store, name, Recorder(request))} pushed"
        await data.pause_schedule(store, name, what == "pause", Recorder(request))
        return f"{name} {what}d"

    return await _act(request, "/ui/schedules", act)


# --- nodes ------------------------------------------------------------------------------


@router.post("/nodes/{node_id}/stop")
async def stop(request: Request, node_id: str) -> Response:
    async def act(form: dict[str, str]) -> str:
        await data.stop_node(data.store_of(request), node_id, Recorder(request))
        return "drain and stop requested"

    return await _act(request, f"/ui/nodes/{quote(node_id, safe='')}", act)
