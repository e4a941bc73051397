"""The hub application: ``create_app(settings)`` builds the FastAPI app.

State lives in Redis (see store/), so any number of apps built here — after a
restart, or as replicas — share one grid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gridq import __version__
from gridq.redisurl import mask_text

from .config import HubSettings, check_tokens
from .fastpath import HEARTBEAT_ROUTE, HeartbeatFastPath
from .outage import RedisOutage
from .routes import doctor as doctor_routes
from .routes import events, health, metrics, node_api, nodes, prometheus_sd, tasks
from .store import Store
from .ui import install as install_ui

log = logging.getLogger("gridq.hub")


def validation_detail(errors: Sequence[Any], prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """422 details naming the field, without echoing the rejected value: it may be a
    Redis URL with a password, or a token."""
    out = []
    for e in errors:
        loc = [*prefix, *e.get("loc", ())]
        msg = str(e.get("msg", "invalid"))
        if e.get("type") == "extra_forbidden":
            msg = f"unknown field {loc[-1]!r}" if loc else "unknown field"
        out.append(
            {
                "loc": loc,
                "field": ".".join(str(x) for x in loc[1:] or loc),
                "msg": mask_text(msg),
                "type": e.get("type", ""),
            }
        )
    return out


class LatencyMiddleware:
    """Request latency per route template (not per raw path: ids would explode the
    label set). A plain ASGI middleware: BaseHTTPMiddleware costs too much per request."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.histogram.labels(scope.get("method", ""), path, str(code)).observe(
                time.perf_counter() - start
            )


async def _periodic(store: Store, interval: float, outage: RedisOutage) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await store.periodic()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the loop alive through a Redis outage
            if not outage.failed(exc):
                log.warning("periodic scheduling pass failed: %s", mask_text(str(exc)))
        else:
            outage.ok()


def create_app(settings: HubSettings | None = None, *, background: bool = True) -> FastAPI:
    """Build the hub. Raises ConfigError for missing/placeholder tokens (unless insecure_dev).

    ``background=False`` disables the periodic scheduling loop (tests drive passes).
    """
    settings = settings or HubSettings()
    for warning in check_tokens(settings):
        log.warning("!!! %s", warning)

    store = Store(settings)
    # A hub that was down heard no heartbeats either: judge nodes only on the silence
    # since it started, or its first pass would take every node's workers away.
    store.listening_since = time.time()
    outage = RedisOutage(store, settings.offline_after)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = (
            asyncio.create_task(_periodic(store, settings.schedule_interval, outage))
            if background
            else None
        )
        try:
            yield
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await store.close()

    docs = settings.public_docs
    app = FastAPI(
        title="gridq hub",
        version=__version__,
        description="Tasks, nodes and scheduling of a gridq grid. Every path but /health "
        "needs `Authorization: Bearer <token>`; see docs/rest.md and docs/node-protocol.md.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.redis_outage = outage
    registry = CollectorRegistry()
    app.state.registry = registry
    app.state.latency = Histogram(
        "gridq_hub_request_duration_seconds",
        "Hub HTTP request latency",
        ["method", "route", "status"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": validation_detail(exc.errors())})

    @app.exception_handler(redis.RedisError)
    async def _redis_down(request: Request, exc: redis.RedisError) -> JSONResponse:
        # An outage is logged once (hub/outage.py); other Redis errors once per request.
        if not outage.failed(exc):
            log.error(
                "hub Redis error on %s %s: %s",
                request.method,
                request.url.path,
                mask_text(str(exc)),
            )
        return JSONResponse(
            status_code=503, content={"detail": "the hub's Redis is unavailable; try again"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never a stack trace or a raw message with a URL in it to the client.
        log.error(
            "unhandled error on %s %s: %s", request.method, request.url.path, mask_text(repr(exc))
        )
        return JSONResponse(
            status_code=500, content={"detail": "internal error (see the hub's log)"}
        )

    for module in (health, metrics, tasks, nodes, node_api, prometheus_sd, events):
        app.include_router(module.router)
    app.include_router(doctor_routes.router)
    install_ui(app, background=background)
    # The last middleware added is the outermost: latency is measured around the
    # heartbeat fast path too, which serves successful heartbeats without the router.
    hb_route = next(
        r for r in node_api.router.routes if getattr(r, "path", None) == HEARTBEAT_ROUTE
    )
    app.add_middleware(HeartbeatFastPath, store=store, route=hb_route)
    app.add_middleware(LatencyMiddleware, histogram=app.state.latency)
    return app
