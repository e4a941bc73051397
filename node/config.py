"""Settings of the node agent (``gridq node``).

Every setting has a flag, an environment variable and a TOML key ([node] table or top
level). Environment names follow CONTRACT.md: ``GRIDQ_HUB_URL``, ``GRIDQ_NODE_TOKEN``
and ``GRIDQ_NODE_<SETTING>`` for the rest. IDM-GridCore's gridnode.toml keys
(server_url, token, parallelism, heartbeat_interval, stop_timeout, container_memory)
are accepted so that its node configuration files work unchanged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import (
    NoDecode,
    SettingsConfigDict,
)

from gridq.hubs import parse_hub_urls
from gridq.settings import GridqSettings


def default_state_dir() -> Path:
    # Root (the usual case for an agent that talks to the Docker socket) keeps state in
    # /var/lib like other daemons; a user's agent keeps it in their home.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/gridq/node")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gridq" / "node"


class NodeSettings(GridqSettings):
    model_config = SettingsConfigDict(
        env_prefix="GRIDQ_NODE_", extra="forbid", populate_by_name=True
    )
    toml_section: ClassVar[str] = "node"
    toml_aliases: ClassVar[dict[str, str]] = {
        "server_url": "hub_url",
        "token": "node_token",
    }

    hub_url: str = Field(
        default="http://127.0.0.1:8080",
        validation_alias="GRIDQ_HUB_URL",
        description="base URL of the hub; several comma-separated: the node moves to the next when its hub stops answering",
    )
    node_token: SecretStr | None = Field(
        default=None,
        validation_alias="GRIDQ_NODE_TOKEN",
        description="join token the hub expects from nodes",
    )
    ca_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("GRIDQ_NODE_CA_FILE", "GRIDQ_HUB_CA_FILE"),
        description="PEM file of the CA that signed the hub's HTTPS certificate (default:"
        " the system's CA store); GRIDQ_HUB_CA_FILE, the CLI's name, is accepted too",
    )
    state_dir: Path = Field(
        default_factory=default_state_dir, description="where the node keeps its identity"
    )
    runtime: Literal["docker", "process"] = Field(default="docker")
    name: str | None = Field(default=None, description="hostname reported to the hub")
    parallelism: int | None = Field(default=None, ge=0, description="worker slots (CPU count)")
    heartbeat_interval: float | None = Field(
        default=None, gt=0, description="seconds between heartbeats (default: the hub's)"
    )
    stop_timeout: float = Field(
        default=30.0, ge=0, description="seconds a worker gets between SIGTERM and SIGKILL"
    )
    container_memory: int = Field(
        default=1024, gt=0, description="memory limit per worker in MB unless the task sets one"
    )
    labels: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="k=v,k2=v2 or a JSON object"
    )
    docker_network: str | None = Field(default=None, description="network the workers join")
    docker_host: str | None = Field(default=None, description="Docker endpoint (DOCKER_HOST)")
    pids_limit: int = Field(default=1024, gt=0)
    read_only: bool = Field(default=False, description="workers get a read-only root file system")
    user: str | None = Field(default=None, description="user the workers run as (uid[:gid])")
    log_max_size: str = Field(default="10m", description="json-file log size per worker")
    log_max_file: int = Field(default=3, ge=1)
    worker_metrics_port: int = Field(
        default=9100, gt=0, lt=65536, description="GRIDQ_METRICS_PORT inside containers"
    )
    metrics_bind: str | None = Field(
        default="0.0.0.0:9101", description="HOST:PORT of the agent's /metrics and /health; '' off"
    )
    advertise_host: str | None = Field(
        default=None, description="address the hub's Prometheus uses to reach this node"
    )
    platform: str | None = Field(
        default=None, description="override the detected platform, e.g. linux/amd64"
    )
    restart_backoff: float = Field(default=1.0, gt=0, description="first restart delay (s)")
    restart_backoff_max: float = Field(default=60.0, gt=0)
    crashloop_after: int = Field(
        default=3, ge=1, description="consecutive failures before an instance shows crashloop"
    )
    healthy_after: float = Field(
        default=60.0, gt=0, description="a worker that ran this long resets its backoff"
    )

    @field_validator("hub_url")
    @classmethod
    def _hub_urls(cls, v: str) -> str:
        return ",".join(parse_hub_urls(v))

    @property
    def hub_urls(self) -> list[str]:
        return parse_hub_urls(self.hub_url)

    @field_validator("labels", mode="before")
    @classmethod
    def _parse_labels(cls, v: Any) -> Any:
        if isinstance(v, str):
            text = v.strip()
            if not text:
                return {}
            if text.startswith("{"):
                return json.loads(text)
            out: dict[str, str] = {}
            for part in text.split(","):
                if not part.strip():
                    continue
                key, sep, value = part.partition("=")
                if not sep or not key.strip():
                    raise ValueError(f"label {part.strip()!r} is not key=value")
                out[key.strip()] = value.strip()
            return out
        return v

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        return v

    @property
    def slots(self) -> int:
        return self.parallelism if self.parallelism is not None else (os.cpu_count() or 1)

    def token(self) -> str:
        return self.node_token.get_secret_value() if self.node_token else ""
