"""The hub's settings, in one place: flag > GRIDQ_* environment > TOML [hub] > default."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from gridq.errors import ConfigError
from gridq.redisurl import validate_url
from gridq.settings import GridqSettings

log = logging.getLogger("gridq.hub")

# Values people paste from examples. A token shorter than MIN_TOKEN_LENGTH is refused,
# and so is one that is too short once these (case-insensitive) are taken out: a
# guessable token is no token. Taking them out rather than refusing any token that
# contains one matters: random hex holds "1234" somewhere about once in 1,500 draws of
# `openssl rand -hex 24`, and such a token is as strong as any other.
PLACEHOLDERS = (
    "changeme",
    "change-me",
    "change_me",
    "secret",
    "token",
    "password",
    "example",
    "default",
    "admin",
    "xxxx",
    "1234",
)
MIN_TOKEN_LENGTH = 16


class HubSettings(GridqSettings):
    """Environment: GRIDQ_HUB_<FIELD> (GRIDQ_HUB_TOKEN, GRIDQ_HUB_REDIS_URL, ...), except
    GRIDQ_NODE_TOKEN; TOML: the field names in a [hub] table."""

    # One variable for both sides: the node reads GRIDQ_NODE_TOKEN too.
    env_extra: ClassVar[dict[str, str]] = {"node_token": "GRIDQ_NODE_TOKEN"}
    # The URL may carry the password: GRIDQ_HUB_REDIS_URL_FILE works too.
    secret_fields: ClassVar[tuple[str, ...]] = ("redis_url",)

    model_config = SettingsConfigDict(
        env_prefix="GRIDQ_HUB_", extra="forbid", populate_by_name=True
    )
    toml_section = "hub"

    bind: str = Field(
        default="0.0.0.0:8080",
        description="HOST:PORT to listen on",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis that holds the hub's state (GRIDQ_HUB_REDIS_URL)",
    )
    redis_password: SecretStr | None = Field(
        default=None,
        description="password put into redis_url (which then must not carry one): lets a"
        " secret file hold only the password while the URL stays plain configuration",
    )
    token: SecretStr | None = Field(
        default=None,
        description="admin API token (GRIDQ_HUB_TOKEN); several comma-separated values are"
        " all valid at once (rotation: add the new one, roll out, remove the old one)",
    )
    viewer_token: SecretStr | None = Field(
        default=None,
        description="read-only token (GRIDQ_HUB_VIEWER_TOKEN): the dashboard and every GET of"
        " the API, never a change (403); comma-separated values for rotation",
    )
    node_token: SecretStr | None = Field(
        default=None,
        description="node join token (GRIDQ_NODE_TOKEN); comma-separated values for rotation",
    )
    tls_cert: Path | None = Field(
        default=None,
        description="PEM certificate (chain) file: with tls_key, the hub serves HTTPS",
    )
    tls_key: Path | None = Field(
        default=None,
        description="PEM private key file of tls_cert",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated addresses or networks of reverse proxies whose"
        " X-Forwarded-For names the client (for the failed-login limit and the audit);"
        " empty: the direct peer is the client",
    )
    auth_fail_limit: int = Field(
        default=20,
        ge=0,
        description="failed authentications from one client address within auth_fail_window"
        " after which that address gets 429 until the window ends; 0: no limit",
    )
    auth_fail_window: float = Field(
        default=60.0,
        gt=0,
        description="seconds of the failed-authentication window",
    )
    audit_max_entries: int = Field(
        default=100_000,
        gt=0,
        description="the audit trail keeps at most this many records (oldest dropped)",
    )
    audit_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="audit records older than this are dropped",
    )
    ui_session_ttl: float = Field(
        default=8 * 3600,
        gt=0,
        description="seconds a dashboard login lasts (GRIDQ_HUB_UI_SESSION_TTL)",
    )
    insecure_dev: bool = Field(
        default=False,
        description="allow missing or placeholder tokens (development only; a missing token opens that API)",
    )
    scheduling: Literal["parallel", "sequential"] = Field(default="parallel")
    auto_advance: bool = Field(
        default=True,
        description="sequential mode: move on when the current task's queue is drained",
    )
    heartbeat_interval: float = Field(
        default=5.0,
        gt=0,
        description="seconds between node heartbeats",
    )
    node_offline_after: float | None = Field(
        default=None,
        gt=0,
        description="seconds without a heartbeat before a node is offline (default: 3 intervals)",
    )
    schedule_interval: float = Field(
        default=2.0,
        gt=0,
        description="seconds between periodic scheduling passes (offline nodes, autoscale, auto-advance)",
    )
    redis_acl: bool = Field(
        default=False,
        description="tasks that do not say: give their workers a Redis ACL user (redis_acl)",
    )
    leader_lease: float = Field(
        default=2.0,
        ge=0.5,
        le=60,
        description="seconds a hub replica's leadership (periodic passes, schedule ticks) lives"
        " without renewal: the longest handover after a leader dies",
    )
    validate_redis_timeout: float = Field(
        default=2.0,
        gt=0,
        description="seconds to wait for a task's Redis when validating it at registration",
    )
    stats_timeout: float = Field(
        default=1.0,
        gt=0,
        description="seconds to wait for a task's Redis when reading live figures",
    )
    public_docs: bool = Field(
        default=True,
        description="serve /docs and /openapi.json without a token (they describe the API, hold no state)",
    )
    log_level: str = Field(default="info")

    @field_validator("redis_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return validate_url(v)

    @model_validator(mode="after")
    def _merge_password(self) -> HubSettings:
        pw = self.redis_password.get_secret_value() if self.redis_password else ""
        if pw:
            self.redis_url = with_password(self.redis_url, pw)
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> HubSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "tls_cert and tls_key go together (GRIDQ_HUB_TLS_CERT, GRIDQ_HUB_TLS_KEY):"
                " set both to serve HTTPS, or neither"
            )
        for name, path in (("tls_cert", self.tls_cert), ("tls_key", self.tls_key)):
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file: {path}")
        return self

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, v: object) -> object:
        if isinstance(v, str):
            v = [p.strip() for p in v.split(",") if p.strip()]
        if isinstance(v, list):
            for p in v:
                try:
                    ipaddress.ip_network(str(p), strict=False)
                except ValueError:
                    raise ValueError(
                        f"trusted_proxies: {p!r} is not an IP address or network"
                    ) from None
        return v

    @field_validator("bind")
    @classmethod
    def _bind(cls, v: str) -> str:
        split_bind(v)
        return v

    @property
    def offline_after(self) -> float:
        return self.node_offline_after or 3 * self.heartbeat_interval

    def admin_token(self) -> str | None:
        return self.token.get_secret_value() if self.token else None

    def join_token(self) -> str | None:
        return self.node_token.get_secret_value() if self.node_token else None

    def admin_tokens(self) -> tuple[str, ...]:
        return token_values(self.token)

    def viewer_tokens(self) -> tuple[str, ...]:
        return token_values(self.viewer_token)

    def join_tokens(self) -> tuple[str, ...]:
        return token_values(self.node_token)


def token_values(secret: SecretStr | None) -> tuple[str, ...]:
    """The values of a comma-separated token setting (rotation: all valid at once)."""
    if secret is None:
        return ()
    return tuple(v.strip() for v in secret.get_secret_value().split(",") if v.strip())


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` in its userinfo (percent-encoded; the user name kept).

    A URL that already has a password is refused: two sources for one secret mean one
    of them is stale. The message never contains either value."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, old = userinfo.partition(":")
    # redis-py reads a lone userinfo (redis://x@host) as the password.
    if old or (at and user and not colon):
        raise ValueError(
            "redis_url already carries a password; give it there or in redis_password"
            " (GRIDQ_HUB_REDIS_PASSWORD[_FILE]), not both"
        )
    netloc = f"{user}:{quote(password, safe='')}@{hostport}"
    return urlunsplit(parts._replace(netloc=netloc))


def split_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bind must be HOST:PORT, e.g. 0.0.0.0:8080, not {bind!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _without_placeholders(value: str) -> tuple[str, list[str]]:
    """``value`` without the placeholder words in it, and the words it held."""
    rest = value.lower()
    found = []
    for p in PLACEHOLDERS:
        if p in rest:
            found.append(p)
            rest = rest.replace(p, "")
    return rest, found


def token_problem(name: str, value: str | None) -> str | None:
    """Why ``value`` is not an acceptable token, in words (never echoing it), or None."""
    if not value:
        return f"{name} is not set"
    if len(value) < MIN_TOKEN_LENGTH:
        return f"{name} is shorter than {MIN_TOKEN_LENGTH} characters"
    rest, found = _without_placeholders(value)
    if found and len(rest) < MIN_TOKEN_LENGTH:
        return (
            f"{name} looks like a placeholder (contains {found[0]!r}; fewer than"
            f" {MIN_TOKEN_LENGTH} characters are left without it)"
        )
    if len(set(value)) < 4:
        return f"{name} has fewer than 4 distinct characters"
    return None


def _set_problems(name: str, values: tuple[str, ...], required: bool) -> list[str]:
    if not values:
        return [f"{name} is not set"] if required else []
    label = (lambda i: f"{name} value {i + 1}") if len(values) > 1 else (lambda i: name)
    return [p for i, v in enumerate(values) if (p := token_problem(label(i), v))]


def check_tokens(settings: HubSettings) -> list[str]:
    """Refuse weak or missing tokens unless insecure_dev; return warnings to log loudly."""
    admin, viewer, join = (
        settings.admin_tokens(),
        settings.viewer_tokens(),
        settings.join_tokens(),
    )
    problems = (
        _set_problems("GRIDQ_HUB_TOKEN", admin, True)
        + _set_problems("GRIDQ_HUB_VIEWER_TOKEN", viewer, False)
        + _set_problems("GRIDQ_NODE_TOKEN", join, True)
    )
    # A value in two sets would give one holder the other's rights (a node the admin
    # API, a viewer writes): the sets must not share a value.
    named = (
        ("GRIDQ_HUB_TOKEN", admin),
        ("GRIDQ_HUB_VIEWER_TOKEN", viewer),
        ("GRIDQ_NODE_TOKEN", join),
    )
    for i, (a_name, a) in enumerate(named):
        for b_name, b in named[i + 1 :]:
            if set(a) & set(b):
                problems.append(f"{a_name} and {b_name} must differ")
    if problems and not settings.insecure_dev:
        raise ConfigError(
            "the hub refuses to start: "
            + "; ".join(problems)
            + ". Generate tokens with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            + " (or pass --insecure-dev for local development)"
        )
    warnings = [f"INSECURE DEV MODE: {p}" for p in problems]
    if settings.insecure_dev and not admin:
        warnings.append("INSECURE DEV MODE: the admin API is open to anyone who can reach the hub")
    if settings.insecure_dev and not join:
        warnings.append("INSECURE DEV MODE: any machine can join as a node")
    return warnings
