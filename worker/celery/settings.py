"""What the Celery adapter reads from the environment, parsed once and typed.

The node sets the worker environment (gridq.contract); the adapter's own knobs are
``GRIDQ_CELERY_*``. Only the environment is read (no TOML: a Celery worker's
configuration is the app's own), and a bad value refuses the start with a message
naming the variable instead of silently becoming a default.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from gridq import contract
from gridq.errors import ConfigError
from gridq.redisurl import validate_url
from gridq.settings import GridqSettings, describe
from gridq.worker.celery.checks import pool_name

Checks = Literal["strict", "warn", "off"]
TimeLimits = Literal["enforce", "off"]
# GRIDQ_WORKER_POOL as a Celery worker takes it; "processes" is gridq's name for prefork.
CeleryPool = Literal["threads", "processes", "prefork", "solo"]


def _env(name: str, default: Any = None) -> Any:
    # The unprefixed names of the worker contract; repr=False: URLs carry passwords.
    return Field(default, validation_alias=AliasChoices(name), repr=False)


class CelerySettings(GridqSettings):
    # An empty variable counts as unset, as it always did here (GRIDQ_METRICS_PORT=).
    model_config = SettingsConfigDict(env_ignore_empty=True)
    # INPUT_REDIS_URL_FILE and GRIDQ_CELERY_STATS_URL_FILE work too (Docker secrets).
    secret_fields: ClassVar[tuple[str, ...]] = ("input_url", "celery_stats_url")

    task_name: str = _env(contract.ENV_TASK_NAME, "")
    node_id: str = _env(contract.ENV_NODE_ID, "")
    instance_id: str = _env(contract.ENV_INSTANCE_ID, "")
    input_url: str | None = _env(contract.ENV_INPUT_REDIS_URL)
    input_queue: str = _env(contract.ENV_INPUT_QUEUE, "")
    # Celery's own variable: read by Celery; here only to know that it wins.
    celery_broker_url: str | None = _env("CELERY_BROKER_URL")

    # GRIDQ_ + field name.
    celery_app: str | None = None
    celery_stats_url: str | None = Field(None, repr=False)
    celery_checks: Checks = "strict"
    celery_time_limits: TimeLimits = "enforce"
    worker_pool: CeleryPool | None = None
    worker_concurrency: int | None = Field(None, ge=1, le=10_000)
    metrics_port: int | None = Field(None, ge=0, le=65535)  # None or 0: no endpoint
    metrics_host: str = "0.0.0.0"

    @field_validator("input_url", "celery_stats_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            return validate_url(v)
        except ValueError as exc:
            # The message never echoes the URL: it may carry a password.
            raise ValueError(str(exc)) from None

    @field_validator("celery_checks", "celery_time_limits", "worker_pool", mode="before")
    @classmethod
    def _case(cls, v: Any) -> Any:
        if isinstance(v, str):
            return v.strip().lower()
        return v

    @property
    def celery_pool(self) -> str | None:
        """GRIDQ_WORKER_POOL as Celery's ``--pool`` value (None: not set)."""
        return pool_name(self.worker_pool) if self.worker_pool else None

    @property
    def enforce_time_limits(self) -> bool:
        return self.celery_time_limits == "enforce"


def load_celery_settings(**values: Any) -> CelerySettings:
    """The environment (``values`` override it), or ConfigError naming every bad variable."""
    try:
        return CelerySettings(**values)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
