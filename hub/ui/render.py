"""Templates, their filters, and the responses every page shares (security headers,
the login redirect, error pages)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, Undefined, select_autoescape

from gridq import __version__

from .session import Session

HERE = Path(__file__).parent

# No inline script, nothing from elsewhere; uPlot sets element styles, hence
# 'unsafe-inline' for styles only. No framing (clickjacking).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _missing(v: Any) -> bool:
    return v is None or isinstance(v, Undefined)


def age(seconds: Any) -> str:
    if _missing(seconds):
        return "–"
    s = float(seconds)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def clock(t: Any) -> str:
    return "–" if _missing(t) or not t else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def num(v: Any) -> str:
    if _missing(v):
        return "–"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.2f}"
    return f"{int(v):,}"


env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(age=age, clock=clock, num=num, url=lambda s: quote(str(s), safe=""))
env.globals["version"] = __version__


def page(
    request: Request, template: str, session: Session | None, status: int = 200, **ctx: Any
) -> HTMLResponse:
    html = env.get_template(template).render(
        request=request, session=session, path=request.url.path, now=time.time(), **ctx
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def to_login(request: Request) -> RedirectResponse:
    # Only the path travels (never a host): the login page sends the user back to it.
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", 303, headers=HEADERS)


def safe_next(target: str | None) -> str:
    """A same-site path to go to after login; anything else goes to the overview."""
    if target and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return "/ui/"


def error(request: Request, session: Session | None, status: int, message: str) -> HTMLResponse:
    return page(request, "error.html", session, status=status, message=message)
