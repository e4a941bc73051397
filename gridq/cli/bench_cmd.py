"""``gridq bench``: benchmarks. A click group so other parts add their own
subcommands (``gridq bench hub`` ...). The scripts live in ``bench/`` of a source
checkout and are loaded from there."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import click

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str) -> ModuleType:
    """Import ``bench.<name>`` from the source checkout: its root goes on sys.path once,
    here, so the scripts import ``bench.*`` and ``tests.support`` by their full names."""
    if not (ROOT / "bench" / f"{name}.py").exists():
        raise click.ClickException(
            f"{ROOT / 'bench' / name}.py not found: benchmarks run from a source checkout"
        )
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"bench.{name}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def bench() -> None:
    """Benchmarks (run from a source checkout); each prints a table.

    \b
    Example:
      gridq bench throughput --jobs 20000     # gridq vs Celery, Dramatiq and RQ
    """


@bench.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def throughput(args: tuple[str, ...]) -> None:
    """Worker throughput vs Celery, Dramatiq and RQ; latency; idle RSS (--help for options)."""
    sys.exit(load_script("throughput").main(list(args)))


@bench.command(
    name="hub", context_settings={"ignore_unknown_options": True, "help_option_names": []}
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def hub_bench(args: tuple[str, ...]) -> None:
    """Hub heartbeats/s and latency with N simulated nodes (--help for options)."""
    sys.exit(load_script("heartbeats").main(list(args)))


@bench.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def chaos(args: tuple[str, ...]) -> None:
    """Kills, partitions, long jobs and load: zero lost jobs, in figures (--help for options)."""
    mod = load_script("chaos")
    sys.exit(mod.main(list(args)))
