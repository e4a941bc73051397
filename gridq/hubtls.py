"""How nodes and the CLI trust the hub over HTTPS: the system's CA store, or one CA file.

httpx's own default is certifi's bundle, which an organisation's private CA is not in
and which ignores what the administrator installed on the machine; the system store
(``ssl.create_default_context``) is what the rest of the machine trusts. A hub whose
certificate is signed by a private CA is trusted with ``GRIDQ_HUB_CA_FILE`` (the CLI;
the node also reads ``GRIDQ_NODE_CA_FILE``).

A certificate that does not verify is reported as such (``untrusted``), never as a
plain "cannot connect": the fix is a setting, not a retry.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from gridq.errors import ConfigError

CA_ENV = "GRIDQ_HUB_CA_FILE"


def tls_context(ca_file: str | Path | None = None, setting: str = CA_ENV) -> ssl.SSLContext:
    """A client context verifying the hub (certificate chain and host name)."""
    if not ca_file:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
        raise ConfigError(f"{setting}: cannot use {ca_file} as a CA file: {why}") from None


def untrusted(exc: BaseException) -> str | None:
    """The verification failure behind ``exc`` (an httpx error), or None if there is none."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return str(cur.verify_message or cur.reason or cur)
        if "CERTIFICATE_VERIFY_FAILED" in str(cur):
            return str(cur)
        cur = cur.__cause__ or cur.__context__
    return None


def untrusted_message(reason: str, setting: str = CA_ENV) -> str:
    return (
        f"the hub's TLS certificate is not trusted: {reason}. If it is signed by your"
        f" own CA, set {setting} to that CA's PEM file"
    )
