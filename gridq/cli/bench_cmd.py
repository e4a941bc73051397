"""``gridq bench``: benchmarks. A click group so other parts add their own
subcommands (``gridq bench hub`` ...). The scripts live in ``bench/`` of a source
checkout and are loaded from there."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import click

from gridq.cli.common import EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "bench"
# The benchmarks' own imports: the peers they compare against (the bench extra) and the
# test helpers they share with the suite (tests/node, which needs pytest).
NEEDED_MODULES = ("celery", "dramatiq", "rq", "pytest")
NEEDED_FILES = (BENCH_DIR / "chaos.py", ROOT / "tests" / "node" / "node_helpers.py")


def missing() -> list[str]:
    """What this installation lacks to run the benchmarks (empty: nothing)."""
    out = [f"{p.relative_to(ROOT)}" for p in NEEDED_FILES if not p.exists()]
    out += [f"the {m} module" for m in NEEDED_MODULES if importlib.util.find_spec(m) is None]
    return out


class _BenchGroup(click.Group):
    """Checks what the benchmarks need before anything else, --help included: from an
    installed package they would only fail with a traceback further on."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        lacking = missing()
        if lacking:
            click.echo(
                "error: gridq bench runs from a source checkout with the bench extra installed:\n"
                "  git clone <the gridq repository> && cd gridq && pip install -e '.[bench]'\n"
                f"missing here: {', '.join(lacking)}",
                err=True,
            )
            ctx.exit(EXIT_USAGE)
        return super().parse_args(ctx, args)


def load_script(name: str) -> ModuleType:
    path = BENCH_DIR / f"{name}.py"
    if not path.exists():
        raise click.ClickException(f"{path} not found: benchmarks run from a source checkout")
    spec = importlib.util.spec_from_file_location(f"gridq_bench_{name}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    # Registered in sys.modules: a script's dataclasses look their module up there.
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@click.group(cls=_BenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
def bench() -> None:
    """Benchmarks (a source checkout with `pip install -e '.[bench]'`); each prints a table.

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
    sys.exit(load_script("chaos").main(list(args)))
