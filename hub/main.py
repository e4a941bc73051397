"""The hub application: ``create_app(settings)`` builds the FastAPI app.

State lives in Redis (see store/), so any number of apps built here — after a
restart, or as replicas — share one grid. This module only wires the rooms together:
routes (one module per resource), deps.py, errors.py, middleware.py, fastpath.py and
background.py; nothing imports it but the ``gridq hub`` command.
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from gridq import __version__

from .auth import TokenSets
from .background import Lifespan, lifespan
from .clientaddr import networks
from .config import HubSettings, check_tokens
from .errors import install_handlers
from .fastpath import HEARTBEAT_ROUTE, HeartbeatFastPath
from .leader import Leader
from .middleware import LatencyMiddleware, latency_histogram
from .outage import RedisOutage
from .ratelimit import AuthFailLimit
from .routes import (
    audit,
    doctor,
    events,
    gridnode,
    health,
    jobs,
    metrics,
    node_api,
    nodes,
    prometheus_sd,
    schedules,
    tasks,
)
from .store import Store
from .ui import install as install_ui

log = logging.getLogger("gridq.hub")

ROUTERS = (
    health,
    metrics,
    tasks,
    jobs,
    nodes,
    node_api,
    gridnode,
    prometheus_sd,
    events,
    doctor,
    schedules,
    audit,
)


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
    store.nodes.listening_since = time.time()
    outage = RedisOutage(store.nodes, settings.offline_after)

    leader = Leader(store.r, settings.leader_lease)
    app = _app(settings, lifespan(store, settings.schedule_interval, outage, leader, background))
    app.state.settings = settings
    app.state.leader = leader
    app.state.tokens = TokenSets.from_settings(settings)
    app.state.store = store
    app.state.redis_outage = outage
    app.state.registry = CollectorRegistry()
    app.state.latency = latency_histogram(app.state.registry)
    install_handlers(app, outage)
    for module in ROUTERS:
        app.include_router(module.router)
    install_ui(app, background=background)
    # The last middleware added is the outermost: latency is measured around the
    # heartbeat fast path too, which serves successful heartbeats without the router.
    hb_route = next(
        r for r in node_api.router.routes if getattr(r, "path", None) == HEARTBEAT_ROUTE
    )
    app.add_middleware(HeartbeatFastPath, nodes=store.nodes, route=hb_route)
    # Outside the fast path: a blocked address gets 429 before any token is checked.
    app.add_middleware(
        AuthFailLimit,
        r=store.r,
        limit=settings.auth_fail_limit,
        window=settings.auth_fail_window,
        trusted=networks(settings.trusted_proxies),
    )
    app.add_middleware(LatencyMiddleware, histogram=app.state.latency)
    return app


def _app(settings: HubSettings, run: Lifespan) -> FastAPI:
    docs = settings.public_docs
    return FastAPI(
        title="gridq hub",
        version=__version__,
        description="Tasks, nodes and scheduling of a gridq grid. Every path but /health "
        "needs `Authorization: Bearer <token>`; see docs/rest.md and docs/node-protocol.md.",
        lifespan=run,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
