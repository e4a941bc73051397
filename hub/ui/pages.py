"""The dashboard's pages (GET). Every page needs a session; without one it redirects
to the login. Lists are paginated; figures of many tasks come from the sampler's
latest-figures HASH (one Redis call), not from every task's own Redis."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from gridq.redisurl import mask_text

from . import data, deadletters, history, render
from .doctor_cache import cache_of
from .session import Session, load

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE_SIZE = 50
DEAD_PAGE = 20
WINDOWS = {"15m": 900, "1h": 3600}
TASK_SORTS = (
    "name",
    "status",
    "depth",
    "oldest_age",
    "rate",
    "in_flight",
    "processed",
    "failed",
    "dead",
    "instances",
)
PageQ = Annotated[int, Query(ge=1, le=100_000)]


async def _guard(request: Request) -> Session | Response:
    s = await load(request)
    return s if s else render.to_login(request)


def _pages(total: int, page: int, size: int = PAGE_SIZE) -> dict[str, int]:
    last = max(1, (total + size - 1) // size)
    return {"page": min(page, last), "last": last, "total": total}


@router.get("")
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", 307)


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    s = await load(request)
    if s:
        return RedirectResponse(render.safe_next(next), 303)
    return render.page(request, "login.html", None, next=render.safe_next(next))


# --- task rows --------------------------------------------------------------------------


async def _task_rows(store: Any) -> list[dict[str, Any]]:
    rows = await data.task_rows(store, await data.task_records(store))
    figures = await history.latest(store)
    for r in rows:
        f = figures.get(r["name"], {})
        for k in ("depth", "oldest_age", "rate", "in_flight", "processed", "failed", "dead"):
            r[k] = f.get(k)
        r["error"] = f.get("error")
        r["instances"] = r["running"]
    return rows


def _sorted(rows: list[dict[str, Any]], key: str, desc: bool) -> list[dict[str, Any]]:
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    present.sort(key=lambda r: (r[key], r["name"]), reverse=desc)
    return present + missing  # unknown figures last, whichever the direction


# --- pages ------------------------------------------------------------------------------


@router.get("/")
async def overview(request: Request) -> Response:
    s = await _guard(request)
    if not isinstance(s, Session):
        return s
    store = data.store_of(request)
    rows = await _task_rows(store)
    nodes = await data.node_views(store)
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    node_status: dict[str, int] = {}
    for n in nodes:
        node_status[n.status] = node_status.get(n.status, 0) + 1
    online = node_status.get("online", 0) + node_status.get("draining", 0)
    return render.page(
        request,
        "overview.html",
        s,
        tasks_by_status=by_status,
        task_count=len(rows),
        node_status=node_status,
        nodes_online=online,
        nodes_offline=node_status.get("offline", 0),
        node_count=len(nodes),
        waiting=sum(int(r["depth"] or 0) for r in rows),
        in_flight=sum(int(r["in_flight"] or 0) for r in rows),
        dead=sum(int(r["dead"] or 0) for r in rows),
        events=await data.events(store, 10),
    )


@router.get("/tasks")
async def tasks_page(
    request: Request, sort: str = "name", dir: str = "asc", page: PageQ = 1
) -> Response:
    s = await _guard(request)
    if not isinstance(s, Session):
        return s
    sort = sort if sort in TASK_SORTS else "name"
    desc = dir == "desc"
    rows = _sorted(await _task_rows(data.store_of(request)), sort, desc)
    p = _pages(len(rows), page)
    start = (p["page"] - 1) * PAGE_SIZE
    return render.page(
        request,
        "tasks.html",
        s,
        rows=rows[start : start + PAGE_SIZE],
        sort=sort,
        desc=desc,
        columns=TASK_SORTS,
        pages=p,
    )


async def _dead_letters(
    store: Any, spec: Any, offset: int, error_type: str | None, job: str | None
) -> dict[str, Any]:
    if spec.kind != "gridq":
        return {"unsupported": "Celery tasks keep failed messages in Celery, not here."}

    def read() -> dict[str, Any]:
        q = data.task_queue(store, spec)
        out: dict[str, Any] = {
            "page": deadletters.page(q, offset, DEAD_PAGE, error_type),
            "types": deadletters.error_types(q),
        }
        if job:
            # The job's record (kept for GRIDQ_RESULT_TTL); a job that left none (raw
            # items, records off, expired) may still be among the dead letters.
            info = q.job(job).info()
            out["record"] = info if info["status"] != "unknown" else None
            out["job"] = deadletters.find_job(q, job)
        return out

    try:
        return await anyio.to_thread.run_sync(read)
    except Exception as exc:  # the task's Redis may be down: say so, keep the page
        return {"error": mask_text(f"cannot read dead letters: {exc}")}


@router.get("/tasks/{name}")
async def task_page(
    request: Request,
    name: str,
    offset: Annotated[int, Query(ge=0)] = 0,
    error_type: str | None = None,
    job: str | None = None,
) -> Response:
    s = await _guard(request)
    if not isinstance(s, Session):
        return s
    store = data.store_of(request)
    rec = await data.task_record(store, name)
    if rec is None:
        return render.error(request, s, 404, f"No task named {name!r}.")
    out = await data.task_out(store, rec)
    # One task: its own Redis now, the rates from the last sample.
    sampled = (await history.latest(store, [name])).get(name, {})
    figures = {**sampled, **(await data.task_stats(store, [rec.spec]))[name]}
    instances = [
        {"node": v.node_id, "node_status": v.status, "i": i}
        for v, i in data.instances_of(await data.node_views(store), name)
    ]
    events = [e for e in await data.events(store, 500) if f" {name} " in f" {e['event']} "][:15]
    job = (job or "").strip()[:200] or None
    return render.page(
        request,
        "task.html",
        s,
        task=out,
        figures=figures,
        instances=instances,
        events=events,
        # The live refresh (X-Live) swaps figures, instances and events only: it skips
        # reading dead letters, which the page shows as of its load.
        dl={"skipped": True}
        if request.headers.get("x-live") == "1"
        else await _dead_letters(store, rec.spec, offset, error_type or None, job),
        error_type=error_type or "",
        job=job,
        offset=offset,
    )


@router.get("/nodes")
async def nodes_page(request: Request, page: PageQ = 1) -> Response:
    s = await _guard(request)
    if not isinstance(s, Session):
        return s
    views = await data.node_views(data.store_of(request))
    order = {"online": 0, "draining": 1, "stopping": 2, "offline": 3, "left": 4}
    views.sort(
        key=lambda v: (order.get(v.status, 9), v.record["info"].get("hostname", ""), v.node_id)
    )
    p = _pages(len(views), page)
    start = (p["page"] - 1) * PAGE_SIZE
    # The API's view (errors in words, counts) only for the page shown.
    nodes = [data.node_api_view(v) for v in views[start : start + PAGE_SIZE]]
    return render.page(request, "nodes.html", s, nodes=nodes, pages=p)


@router.get("/nodes/{node_id}")
async def node_page(request: Request, node_id: str) -> Response:
    s = await _guard(request)
    if not isinstance(s, Session):
        return s
    node = await data.node_out(data.store_of(request), node_id)
    if node is None:
        return render.error(request, s, 404, f"No node {node_id!r}.")
    used = sum(1 for i in node.instances if i.state in ("running", "starting"))
    return render.page(request, "node.html", s, node=node, used=used)


@router.get("/doctor")
async def doctor_page(request: Request) -> Response:
    s = await _guard(request)
    if not isinstance(s, Session):
        return s
    cache = cache_of(request.app)
    result = await cache.get(request.app, now=request.query_params.get("now") == "1")
    return render.page(request, "doctor.html", s, result=result, age=cache.age())


@router.get("/schedules")
async def schedules_page(request: Request) -> Response:
    s = await _guard(request)
    if not isinstance(s, Session):
        return s
    items = await data.schedules(data.store_of(request))
    return render.page(request, "schedules.html", s, schedules=items)


AUDIT_PAGE = 100
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    """The audit trail (docs/security.md): who changed what, newest first, a page at a time."""
    s = await _guard(request)
    if not isinstance(s, Session):
        return s
    before = request.query_params.get("before")
    if before is not None and not _STREAM_ID.match(before):
        before = None
    entries = await data.audit(data.store_of(request), AUDIT_PAGE, before)
    older = entries[-1]["id"] if len(entries) == AUDIT_PAGE else None
    return render.page(request, "audit.html", s, entries=entries, older=older)


# --- data for the scripts ---------------------------------------------------------------


@router.get("/api/series")
async def series(request: Request, window: str = "15m", task: str | None = None) -> Response:
    s = await load(request)
    if s is None:
        return JSONResponse({"detail": "log in"}, 401, headers=render.HEADERS)
    seconds = WINDOWS.get(window, 900)
    body = await history.series(data.store_of(request), task, seconds)
    body["window"] = [time.time() - seconds, time.time()]  # type: ignore[assignment]
    return JSONResponse(body, headers=render.HEADERS)


@router.get("/api/doctor-summary")
async def doctor_summary(request: Request) -> Response:
    s = await load(request)
    if s is None:
        return JSONResponse({"detail": "log in"}, 401, headers=render.HEADERS)
    result = cache_of(request.app).peek(request.app)
    body = (
        {"ok": result.ok, "summary": result.summary}
        if result is not None
        else {"ok": None, "summary": "the doctor is running its checks…", "pending": True}
    )
    return JSONResponse(body, headers=render.HEADERS)
