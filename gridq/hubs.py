"""Several hubs on one Redis: ``GRIDQ_HUB_URL=http://h1:8080,http://h2:8080``.

Hubs keep no state of their own (it is all in Redis), so any of them serves any node
or CLI call. Nodes move to the next hub in the list when theirs stops answering
(gridq/node/client.py); the CLI takes the first that answers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def parse_hub_urls(text: str) -> list[str]:
    """The hub base URLs of a comma-separated list, in order; ValueError naming a bad one."""
    urls = [u.strip().rstrip("/") for u in text.split(",") if u.strip()]
    if not urls:
        raise ValueError("no hub URL given")
    for u in urls:
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"hub URL {u!r} is not http(s)://HOST[:PORT]")
    if len(set(urls)) != len(urls):
        raise ValueError("a hub URL is listed twice")
    return urls


def first_answering(urls: list[str], timeout: float = 2.0, verify: Any = True) -> str:
    """The first hub whose /health answers (any HTTP status below 500); the first of
    the list if none does, so the caller's own error names it. ``verify``: the TLS
    context the caller will use (a private CA), so an https hub is judged the same way."""
    if len(urls) == 1:
        return urls[0]
    import httpx  # only the CLI calls this; keep `import gridq.hubs` cheap

    for u in urls:
        try:
            if httpx.get(f"{u}/health", timeout=timeout, verify=verify).status_code < 500:
                return u
        except httpx.HTTPError:
            continue
    return urls[0]
