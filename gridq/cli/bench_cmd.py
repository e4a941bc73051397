"""``gridq bench``: benchmarks. A click group so other parts add their own
subcommands (``gridq bench hub`` ...). The scripts live in ``bench/`` of a source
checkout and are loaded from there."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import click

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def load_script(name: str) -> ModuleType:
    path = BENCH_DIR / f"{name}.py"
    if not path.exists():
        raise click.ClickException(f"{path} not found: benchmarks run from a source checkout")
    spec = importlib.util.spec_from_file_location(f"gridq_bench_{name}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
    # Registered in sys.modules: the script's dataclasses look their module up there.
    path = BENCH_DIR / "chaos.py"
    if not path.exists():
        raise click.ClickException(f"{path} not found: benchmarks run from a source checkout")
    spec = importlib.util.spec_from_file_location("gridq_bench_chaos", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    sys.exit(mod.main(list(args)))
