"""Generate docs/configuration.md from the settings classes and the CLI's flags.

``python -m gridq.cli.confdoc > docs/configuration.md``; a test fails when the file is stale.
"""

from __future__ import annotations

import importlib
from typing import Any

import click
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gridq.settings import secret_env

# (title, settings class, click command) for each part.
PARTS: list[tuple[str, str, str]] = [
    ("gridq hub", "gridq.hub.config:HubSettings", "gridq.cli.hub_cmd:hub"),
    ("gridq node", "gridq.node.config:NodeSettings", "gridq.cli.node_cmd:node"),
    ("gridq worker", "gridq.worker.settings:WorkerSettings", "gridq.cli.worker_cmd:worker"),
]


def _load(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def _env_names(cls: Any, name: str, field: FieldInfo) -> list[str]:
    extra = getattr(cls, "env_extra", {}).get(name)
    if extra:
        return [extra, f"{cls.model_config.get('env_prefix', '')}{name}".upper()]
    alias = field.validation_alias
    if alias is None:
        return [f"{cls.model_config.get('env_prefix', '')}{name}".upper()]
    choices = getattr(alias, "choices", None)
    if choices is not None:
        return [str(c).upper() for c in choices if isinstance(c, str)]
    return [str(alias).upper()]


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
        return (
            "(computed)"
            if callable(value)
            else f"`{value}`"  # str: a path shows as /var/lib/..., not PosixPath(...)
            if value not in ({}, [], None)
            else "—"
        )
    if field.default is PydanticUndefined:
        return "required"
    if field.default is None or field.default == "":
        return "—"
    return f"`{field.default}`"


def _flags(cmd: click.Command) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in cmd.params:
        if isinstance(p, click.Option) and p.name:
            out[p.name] = ", ".join(f"`{o}`" for o in p.opts)
    return out


def render() -> str:
    lines = [
        "# Configuration",
        "",
        "Generated from the settings classes by `python -m gridq.cli.confdoc > docs/configuration.md`;",
        "a test fails when this file is stale. Do not edit by hand.",
        "",
        "Every setting can be given as a command-line flag, an environment variable, or a key in",
        "a TOML file (`--config PATH` or `GRIDQ_CONFIG`), in that order of precedence, else its",
        "default. In a TOML file, put each part's keys under its table (`[hub]`, `[node]`,",
        "`[worker]`) or at the top level. Unknown keys are an error at start-up.",
        "",
        "Secret settings (tokens, passwords, Redis URLs) also take `<VAR>_FILE`, as the",
        "official Docker images do: the value is the named file's content without its",
        "trailing newline (Docker/Compose/Kubernetes secrets, systemd credentials). Setting",
        "both `VAR` and `VAR_FILE` is an error, as is a file that cannot be read.",
        "",
        "Every Redis URL (the hub's state, a task's `input_redis`/`output_redis`, the",
        "worker's `INPUT_REDIS_URL`/`OUTPUT_REDIS_URL`, the CLI's `--redis-url`) takes one of:",
        "",
        "| form | what |",
        "|---|---|",
        "| `redis://[[USER]:PASSWORD@]HOST:PORT[/DB]` | one server (`rediss://`: TLS) |",
        "| `unix://[[USER]:PASSWORD@]/PATH.sock[?db=DB]` | one server on a Unix socket |",
        "| `redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]` | Redis Cluster, any of its nodes (`rediss+cluster://`: TLS) |",
        "| `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]` | the master Sentinel names MASTER; the password is the master's (`rediss+sentinel://`: TLS) |",
        "",
        "On a cluster each queue lives in the slot of its name (docs/protocol.md, key layout 2).",
        "Passwords are masked (`***`) wherever a URL is shown.",
        "",
        "Any of them may end in `?min_replicas=N`: every enqueue through it (producers,",
        "`gridq push`) and every settle batch of a worker then waits (`WAIT N`) until N",
        "replicas have the write, so an acknowledged job or result survives a failover.",
        "`GRIDQ_REDIS_MIN_REPLICAS=N` does the same for every URL without the option, and",
        "`GRIDQ_REDIS_WAIT_MS` (default 2000) bounds one WAIT. What happens when fewer",
        "replicas answer, and what it costs: docs/scaling.md.",
        "",
        "`GRIDQ_HUB_URL` (nodes and the CLI) may list several hubs that share one Redis,",
        "comma-separated: `http://h1:8080,http://h2:8080`. A node moves to the next when its",
        "hub stops answering; the CLI takes the first that answers.",
        "",
    ]
    for title, settings_ref, cmd_ref in PARTS:
        try:
            cls = _load(settings_ref)
            cmd = _load(cmd_ref)
        except (ImportError, AttributeError):
            continue
        flags = _flags(cmd)
        section = getattr(cls, "toml_section", "")
        lines += [f"## `{title}`", ""]
        if section:
            lines += [f"TOML table: `[{section}]`.", ""]
        aliases = getattr(cls, "toml_aliases", {})
        if aliases:
            pairs = ", ".join(f"`{k}` → `{v}`" for k, v in sorted(aliases.items()))
            lines += [f"Also accepted in TOML (compatibility): {pairs}.", ""]
        lines += ["| TOML key | environment | flag | default | meaning |", "|---|---|---|---|---|"]
        secret = secret_env(cls)
        for name, field in cls.model_fields.items():
            names = _env_names(cls, name, field)
            if name in secret:
                names.append(f"{secret[name]}_FILE")
            env = ", ".join(f"`{e}`" for e in names)
            desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
            # A flag named after the field, or without the part's prefix (--pool: worker_pool).
            flag = flags.get(name) or flags.get(name.removeprefix(f"{section}_"), "—")
            lines.append(f"| `{name}` | {env} | {flag} | {_default(field)} | {desc} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
