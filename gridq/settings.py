"""Configuration loading shared by hub, node and worker.

Precedence: command-line flag > environment > TOML file > default. Each part defines
its own pydantic-settings class; ``load()`` parses it once, typed, at start-up.
Unknown TOML keys are rejected (configuration is never dropped silently). Nothing
here reads the environment at import time.

Secret settings (tokens, passwords, URLs that carry a password) also take
``<VAR>_FILE``, the convention of the official Docker images: the value is read from
the named file, so that Docker/Compose secrets keep it out of ``docker inspect``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gridq.errors import ConfigError

S = TypeVar("S", bound="GridqSettings")


class _WholeSource(PydanticBaseSettingsSource):
    """A source that hands pydantic-settings all its values at once (``__call__``); the
    per-field hook is abstract in the base class but never used for such sources."""

    def get_field_value(
        self, field: Any, field_name: str
    ) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False


class _TomlSource(_WholeSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(
        self, field: Any, field_name: str
    ) -> tuple[Any, str, bool]:  # pragma: no cover
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class _ByAlias(_WholeSource):
    """Hands values given by field name (flags, TOML) to the model under the field's
    environment alias, if it has one. pydantic-settings validates every source's
    values by alias; with extra="forbid" a field name would count as unknown."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.inner = inner

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


class _ExtraEnv(_WholeSource):
    """Variables whose names break the class's prefix (``env_extra``), e.g. the hub's
    GRIDQ_NODE_TOKEN: one variable shared by hub and node."""

    def __call__(self) -> dict[str, Any]:
        extra: dict[str, str] = getattr(self.settings_cls, "env_extra", {})
        return {name: os.environ[var] for name, var in extra.items() if os.environ.get(var)}


def _env_var(cls: type[BaseSettings], name: str) -> str:
    """The one documented environment variable of field ``name``."""
    extra: dict[str, str] = getattr(cls, "env_extra", {})
    if name in extra:
        return extra[name]
    alias = cls.model_fields[name].validation_alias
    choices = getattr(alias, "choices", None)
    if choices:
        alias = next((c for c in choices if isinstance(c, str)), None)
    if isinstance(alias, str):
        return alias
    return f"{cls.model_config.get('env_prefix', '')}{name}".upper()


def _holds_secretstr(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    origin = get_origin(annotation)
    return (origin is Union or origin is UnionType) and any(
        _holds_secretstr(a) for a in get_args(annotation)
    )


def secret_env(cls: type[BaseSettings]) -> dict[str, str]:
    """field -> environment variable, for every secret field of ``cls``: those typed
    SecretStr, and plain-str ones listed in ``secret_fields`` (URLs with a password)."""
    listed: tuple[str, ...] = getattr(cls, "secret_fields", ())
    return {
        name: _env_var(cls, name)
        for name, field in cls.model_fields.items()
        if name in listed or _holds_secretstr(field.annotation)
    }


def read_secret_file(var: str) -> str | None:
    """The value of secret ``var`` from ``<var>_FILE``, or None when that is not set.

    Setting both is an error rather than a precedence rule: two sources for one secret
    mean one of them is stale, and guessing which would hide it. Messages name the
    variables and the path, never the content."""
    path = os.environ.get(f"{var}_FILE")
    if not path:
        return None
    if os.environ.get(var):
        raise ConfigError(f"both {var} and {var}_FILE are set: give the secret only one way")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        # The path is named, unless it does not look like one: then the secret itself
        # may have been put into VAR_FILE by mistake, and must not be echoed.
        where = path if "/" in path else "the file it names (not shown: no '/' in it)"
        raise ConfigError(f"{var}_FILE: cannot read {where}: {why}") from None
    # Editors and `echo x > file` end a file with a newline that is not part of the secret.
    return text.rstrip("\r\n")


def env_secret(var: str) -> str | None:
    """``var`` from the environment, else from ``<var>_FILE`` (for code outside settings
    classes, e.g. the CLI's GRIDQ_HUB_TOKEN)."""
    from_file = read_secret_file(var)
    return from_file if from_file is not None else os.environ.get(var) or None


class _SecretFiles(_WholeSource):
    """``<VAR>_FILE`` for every secret field; ranks with the environment."""

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, var in secret_env(self.settings_cls).items():
            value = read_secret_file(var)
            if value is not None:
                out[name] = value
        return out


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
    # Plain-str fields that hold a secret (SecretStr fields are found by their type):
    # they take <VAR>_FILE too.
    secret_fields: ClassVar[tuple[str, ...]] = ()

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
            # Before the environment: with GRIDQ_X_FILE set, GRIDQ_X may only be empty
            # (both non-empty is an error), and the file's value must win over "".
            _ByAlias(settings_cls, _SecretFiles(settings_cls)),
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
