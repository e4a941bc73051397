"""Configuration loading shared by hub, node and worker.

Precedence: command-line flag > environment > TOML file > default. Each part defines
its own pydantic-settings class; ``load()`` parses it once, typed, at start-up.
Unknown TOML keys are rejected (configuration is never dropped silently). Nothing
here reads the environment at import time.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gridq.errors import ConfigError

S = TypeVar("S", bound="GridqSettings")


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(
        self, field: Any, field_name: str
    ) -> tuple[Any, str, bool]:  # pragma: no cover
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class _ByAlias(PydanticBaseSettingsSource):
    """Hands values given by field name (flags, TOML) to the model under the field's
    environment alias, if it has one. pydantic-settings validates every source's
    values by alias; with extra="forbid" a field name would count as unknown."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.inner = inner

    def get_field_value(
        self, field: Any, field_name: str
    ) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in self.inner().items():
            field = self.settings_cls.model_fields.get(name)
            alias = field.validation_alias if field is not None else None
            choices = getattr(alias, "choices", None)
            if choices:
                alias = next((c for c in choices if isinstance(c, str)), None)
            out[alias if isinstance(alias, str) else name] = value
        return out


class _ExtraEnv(PydanticBaseSettingsSource):
    """Variables whose names break the class's prefix (``env_extra``), e.g. the hub's
    GRIDQ_NODE_TOKEN: one variable shared by hub and node."""

    def get_field_value(
        self, field: Any, field_name: str
    ) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        extra: dict[str, str] = getattr(self.settings_cls, "env_extra", {})
        return {name: os.environ[var] for name, var in extra.items() if os.environ.get(var)}


class GridqSettings(BaseSettings):
    """Base: environment prefix GRIDQ_, unknown keys forbidden, TOML support."""

    model_config = SettingsConfigDict(env_prefix="GRIDQ_", extra="forbid", populate_by_name=True)

    # Set by load() for the duration of one construction; a class attribute keeps
    # pydantic-settings' source hook simple.
    _toml_data: ClassVar[dict[str, Any]] = {}
    # TOML keys of the seed system accepted as aliases: {"server_url": "hub_url"}.
    toml_aliases: ClassVar[dict[str, str]] = {}
    # The TOML table this class reads ([hub], [node], [worker]); top-level keys work too.
    toml_section: ClassVar[str] = ""
    # field -> environment variable, for names outside the class's prefix.
    env_extra: ClassVar[dict[str, str]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _TomlSource(settings_cls, cls._toml_data)
        return (
            _ByAlias(settings_cls, init_settings),
            env_settings,
            _ExtraEnv(settings_cls),
            _ByAlias(settings_cls, toml),
        )


def read_toml(path: str | os.PathLike[str], cls: type[GridqSettings]) -> dict[str, Any]:
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    data = raw.get(cls.toml_section, raw) if cls.toml_section else raw
    if cls.toml_section and cls.toml_section in raw:
        data = raw[cls.toml_section]
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: [{cls.toml_section}] must be a table")
    out: dict[str, Any] = {}
    other_sections = {"hub", "node", "worker"} - {cls.toml_section}
    for key, value in data.items():
        if key in other_sections and isinstance(value, dict):
            continue
        name = cls.toml_aliases.get(key, key).replace("-", "_")
        if name not in cls.model_fields:
            raise ConfigError(
                f"config file {p}: unknown key {key!r}"
                + (f" in [{cls.toml_section}]" if cls.toml_section else "")
            )
        out[name] = value
    return out


def load(cls: type[S], config: str | os.PathLike[str] | None = None, **flags: Any) -> S:
    """Build settings: flags (None = not given) > environment > TOML > defaults."""
    path = config or os.environ.get("GRIDQ_CONFIG")
    toml_data = read_toml(path, cls) if path else {}
    given = {k: v for k, v in flags.items() if v is not None}
    cls._toml_data = toml_data
    try:
        return cls(**given)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
    finally:
        cls._toml_data = {}


def describe(exc: ValidationError) -> str:
    """One line per problem, naming the setting; never echoes the rejected value (it may be a secret)."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "settings"
        parts.append(f"{loc}: {err['msg']}")
    return "invalid configuration: " + "; ".join(parts)
