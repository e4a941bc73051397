"""Worker settings: flag > environment > TOML ``[worker]`` > default.

The queue and identity variables keep the unprefixed names the seed system
(IDM-GridCore) injects (``INPUT_REDIS_URL``, ``INPUT_QUEUE``, ``INSTANCE_ID`` ...), so
its container images run unchanged; every other knob is ``GRIDQ_``-prefixed. Nothing
here reads the environment until ``load_worker_settings()`` is called.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator

from gridq import contract as c
from gridq import signing
from gridq.contract import DEFAULT_POOL, PoolName
from gridq.errors import ConfigError
from gridq.redisurl import validate_url
from gridq.settings import GridqSettings, load


class WorkerSettings(GridqSettings):
    toml_section: ClassVar[str] = "worker"
    # They carry the password: INPUT_REDIS_URL_FILE / OUTPUT_REDIS_URL_FILE work too.
    secret_fields: ClassVar[tuple[str, ...]] = ("input_url", "output_url")
    # Short TOML keys: [worker] pool = "processes" rather than worker_pool.
    toml_aliases: ClassVar[dict[str, str]] = {
        "pool": "worker_pool",
        "concurrency": "worker_concurrency",
        "prefetch": "worker_prefetch",
        "lease_seconds": "worker_lease_seconds",
        "grace_seconds": "worker_grace_seconds",
        "max_jobs_per_child": "worker_max_jobs_per_child",
        "max_rss_mb": "worker_max_rss_mb",
    }

    task_name: str = Field("", validation_alias=AliasChoices(c.ENV_TASK_NAME))
    node_id: str = Field("", validation_alias=AliasChoices(c.ENV_NODE_ID))
    instance_id: str = Field("", validation_alias=AliasChoices(c.ENV_INSTANCE_ID))
    input_url: str | None = Field(None, validation_alias=AliasChoices(c.ENV_INPUT_REDIS_URL))
    output_url: str | None = Field(None, validation_alias=AliasChoices(c.ENV_OUTPUT_REDIS_URL))
    input_queue: str = Field("", validation_alias=AliasChoices(c.ENV_INPUT_QUEUE))
    output_queue: str = Field("", validation_alias=AliasChoices(c.ENV_OUTPUT_QUEUE))

    # GRIDQ_WORKER_POOL etc. (env_prefix GRIDQ_ + field name).
    worker_pool: PoolName = DEFAULT_POOL
    worker_concurrency: int | None = Field(None, ge=1, le=10_000)
    # Jobs claimed beyond the running ones (None: same as concurrency, at least 8).
    worker_prefetch: int | None = Field(None, ge=0, le=10_000)
    worker_lease_seconds: float = Field(30.0, gt=0)
    worker_grace_seconds: float = Field(25.0, ge=0)
    worker_max_jobs_per_child: int = Field(1000, ge=0)  # processes pool; 0 = never recycle
    worker_max_rss_mb: int = Field(0, ge=0)  # processes pool; 0 = no limit
    worker_burst: bool = False
    # Replicas every settle batch waits for (WAIT); a URL's ?min_replicas=N wins.
    redis_min_replicas: int = Field(
        0,
        ge=0,
        le=100,
        description="replicas each settle batch waits for (WAIT); ?min_replicas=N in a URL wins",
    )
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    log_level: str = "INFO"
    # Signed jobs (gridq.signing): comma-separated HMAC keys, the first signs, any verifies.
    signing_key: SecretStr | None = None
    require_signed: bool = False  # also dead-letter raw items

    @field_validator("input_url", "output_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        assert v is not None
        try:
            return validate_url(v)
        except ValueError as exc:
            # The message never echoes the URL: it may carry a password.
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _defaults(self) -> WorkerSettings:
        if self.output_url is None:
            self.output_url = self.input_url
        check_signing(self.signing_key, self.require_signed)
        return self

    @property
    def concurrency(self) -> int:
        if self.worker_concurrency:
            return self.worker_concurrency
        if self.worker_pool == "solo":
            return 1
        if self.worker_pool == "processes":
            return os.cpu_count() or 1
        if self.worker_pool == "asyncio":
            return 100
        return 8

    @property
    def prefetch(self) -> int:
        if self.worker_prefetch is not None:
            return self.worker_prefetch
        if self.worker_pool == "solo":
            return 1
        return max(self.concurrency, 8)


def check_signing(key: SecretStr | None, require_signed: bool) -> None:
    """Bad keys fail at start-up, not on the first job; messages never echo a key."""
    try:
        keys = signing.parse_keys(key.get_secret_value() if key else None)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if require_signed and not keys:
        raise ValueError("GRIDQ_REQUIRE_SIGNED=true needs GRIDQ_SIGNING_KEY to verify with")


def load_worker_settings(config: str | None = None, **flags: Any) -> WorkerSettings:
    return load(WorkerSettings, config, **flags)
