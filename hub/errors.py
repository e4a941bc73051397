"""The hub's error answers: 422 details naming the field, 503 on a Redis outage, a bare
500 otherwise. Never an echoed value, a stack trace or a URL with a password in it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from gridq.redisurl import mask_text

from .outage import RedisOutage

log = logging.getLogger("gridq.hub")


def _detail(loc: list[Any], msg: str, kind: str) -> dict[str, Any]:
    """One 422 detail entry; ``field`` is the location without its leading "body"."""
    return {"loc": loc, "field": ".".join(str(x) for x in loc[1:] or loc), "msg": msg, "type": kind}


def validation_detail(errors: Sequence[Any], prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """422 details naming the field, without echoing the rejected value: it may be a
    Redis URL with a password, or a token."""
    out = []
    for e in errors:
        loc = [*prefix, *e.get("loc", ())]
        msg = str(e.get("msg", "invalid"))
        if e.get("type") == "extra_forbidden":
            msg = f"unknown field {loc[-1]!r}" if loc else "unknown field"
        out.append(_detail(loc, mask_text(msg), e.get("type", "")))
    return out


def unprocessable(field: str, msg: str, kind: str = "redis_check") -> HTTPException:
    """A 422 for one body field that validated but failed a later check."""
    return HTTPException(422, detail=[_detail(["body", field], msg, kind)])


def not_found(kind: str, name: str) -> HTTPException:
    """The 404 of a lookup by name: "no task named 'add'"."""
    return HTTPException(404, detail=f"no {kind} named {name!r}")


def install_handlers(app: FastAPI, outage: RedisOutage) -> None:
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
