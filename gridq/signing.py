"""Signed jobs: HMAC-SHA256 over the canonical envelope (docs/protocol.md, "Signed jobs").

A producer with ``GRIDQ_SIGNING_KEY`` adds ``"sig"`` (lower-case hex) to every
envelope it writes; a worker with a key dead-letters an envelope whose ``sig`` is
missing or matches none of its keys. Several comma-separated keys make rotation
possible: producers sign with the first, workers accept any.

The canonical form is the envelope without ``sig`` and ``attempt`` (the worker
rewrites the attempt counter on every retry and must not need the key to do so),
serialised with sorted keys, separators ``(",", ":")`` and ``ensure_ascii=True``:
pure ASCII, so no encoding or normalisation question arises between languages.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gridq.errors import ConfigError
from gridq.settings import env_secret

ENV_SIGNING_KEY = "GRIDQ_SIGNING_KEY"
SIG_FIELD = "sig"
# Fields outside the signature: the signature itself, and the retry counter.
UNSIGNED_FIELDS = frozenset({SIG_FIELD, "attempt"})
MIN_KEY_LENGTH = 16

# Dead-letter reasons (docs/worker.md).
BAD_SIGNATURE = "bad signature"
UNSIGNED_RAW = "unsigned raw item"


def parse_keys(text: str | None, var: str = ENV_SIGNING_KEY) -> tuple[bytes, ...]:
    """Comma-separated keys, first one signs. Messages never echo a key."""
    if text is None or not text.strip():
        return ()
    parts = [p.strip() for p in text.split(",")]
    if any(not p for p in parts):
        raise ConfigError(f"{var}: empty key in the comma-separated list")
    short = [i for i, p in enumerate(parts) if len(p) < MIN_KEY_LENGTH]
    if short:
        raise ConfigError(f"{var}: key #{short[0] + 1} is shorter than {MIN_KEY_LENGTH} characters")
    return tuple(p.encode() for p in parts)


# One encoder for every call: json.dumps() with non-default options builds a new one
# each time, which costs more than the encoding of a small envelope.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical(body: dict[str, Any]) -> bytes:
    """The bytes the signature covers."""
    signed = {k: v for k, v in body.items() if k not in UNSIGNED_FIELDS}
    return _CANONICAL.encode(signed).encode("ascii")


def signature(body: dict[str, Any], key: bytes) -> str:
    return hmac.digest(key, canonical(body), "sha256").hex()


def _is_envelope(body: Any) -> bool:
    return isinstance(body, dict) and "gridq" in body


def sign_item(item: bytes, keys: Sequence[bytes]) -> bytes:
    """The envelope with its ``sig`` (first key); raw items and no keys: unchanged."""
    if not keys or item[:1] != b"{":
        return item
    try:
        body = json.loads(item)
    except (ValueError, UnicodeDecodeError):
        return item
    if not _is_envelope(body):
        return item
    body[SIG_FIELD] = signature(body, keys[0])
    return json.dumps(body, separators=(",", ":")).encode()


def verify_body(body: dict[str, Any], keys: Sequence[bytes]) -> str | None:
    """None when ``body`` carries a signature made with one of ``keys``; else why not."""
    sig = body.get(SIG_FIELD)
    if not isinstance(sig, str) or not sig:
        return "the envelope carries no signature"
    data = canonical(body)
    # Every key is tried (no early exit) so the time taken does not tell which matched.
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(hmac.digest(key, data, "sha256").hex(), sig)
    return None if ok else "the signature matches none of the worker's keys"


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: str  # BAD_SIGNATURE or UNSIGNED_RAW
    message: str

    @property
    def error_type(self) -> str:
        return "UnsignedRawItem" if self.reason == UNSIGNED_RAW else "BadSignature"


@dataclass(frozen=True, slots=True)
class Verifier:
    """A worker's signature policy: its keys and whether raw items are refused."""

    keys: tuple[bytes, ...]
    require_signed: bool = False

    @property
    def active(self) -> bool:
        return bool(self.keys) or self.require_signed

    def check(self, item: bytes, is_raw: bool) -> Verdict | None:
        """None when the item may run. ``is_raw``: a raw item (or a raw item's retry)."""
        if is_raw:
            if self.require_signed:
                return Verdict(UNSIGNED_RAW, "raw items are refused: GRIDQ_REQUIRE_SIGNED=true")
            return None
        if not self.keys:
            # GRIDQ_REQUIRE_SIGNED without a key: nothing can be verified, refuse all.
            return Verdict(BAD_SIGNATURE, "the worker has no signing key to verify with")
        try:
            body = json.loads(item)
        except (ValueError, UnicodeDecodeError):  # pragma: no cover - decode() parsed it
            return Verdict(BAD_SIGNATURE, "the envelope is not JSON")
        why = verify_body(body, self.keys)
        return None if why is None else Verdict(BAD_SIGNATURE, why)


@dataclass(frozen=True, slots=True)
class Signer:
    """A producer's keys; ``sign()`` is a no-op without one."""

    keys: tuple[bytes, ...] = ()

    def sign(self, item: bytes) -> bytes:
        return sign_item(item, self.keys) if self.keys else item

    def sign_all(self, items: Sequence[bytes]) -> list[bytes]:
        return [self.sign(i) for i in items] if self.keys else list(items)

    @classmethod
    def from_env(cls) -> Signer:
        """GRIDQ_SIGNING_KEY, or the file GRIDQ_SIGNING_KEY_FILE names (read when called)."""
        return cls(parse_keys(env_secret(ENV_SIGNING_KEY)))
