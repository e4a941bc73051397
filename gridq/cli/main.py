"""The ``gridq`` command. Subcommands load lazily: ``gridq worker`` must start fast and
must not import the hub's web stack or the Docker SDK."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from gridq import __version__

# name -> "module:attribute" of a click command. One line per subcommand.
COMMANDS: dict[str, str] = {
    "worker": "gridq.cli.worker_cmd:worker",
    "hub": "gridq.cli.hub_cmd:hub",
    "node": "gridq.cli.node_cmd:node",
    "up": "gridq.cli.up_cmd:up",
    "task": "gridq.cli.task_cmd:task",
    "push": "gridq.cli.push_cmd:push",
    "job": "gridq.cli.job_cmd:job",
    "status": "gridq.cli.status_cmd:status",
    "dlq": "gridq.cli.dlq_cmd:dlq",
    "bench": "gridq.cli.bench_cmd:bench",
    "doctor": "gridq.cli.doctor_cmd:doctor",
    "celery": "gridq.cli.celery_cmd:celery",
    "migrate": "gridq.cli.migrate_cmd:migrate",
    "schedule": "gridq.cli.schedule_cmd:schedule",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in COMMANDS if _available(n))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or not _available(cmd_name):
            return None
        module, attr = target.split(":")
        cmd: Any = getattr(importlib.import_module(module), attr)
        return cmd  # type: ignore[no-any-return]


def _available(name: str) -> bool:
    module = COMMANDS[name].split(":")[0]
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gridq")
def cli() -> None:
    """gridq: a Redis-backed task grid.

    \b
    Example:
      gridq up --demo              # run the whole grid locally with a demo task
      gridq worker myjobs:app      # run a worker for the app in myjobs.py
    """


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="gridq", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
