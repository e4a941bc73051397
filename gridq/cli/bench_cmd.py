"""``gridq bench``: benchmarks. A click group so other parts add their own
subcommands (``gridq bench hub`` ...). The scripts live in ``bench/`` of a source
checkout and are loaded from there."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import click

from gridq.cli.common import EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]
# The benchmarks' own imports: the peers they compare against (the bench extra) and the
# helpers they share with the test suite (tests/support, which imports pytest).
NEEDED_MODULES = ("celery", "dramatiq", "rq", "pytest")
NEEDED_FILES = (ROOT / "bench" / "chaos.py", ROOT / "tests" / "support" / "__init__.py")


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
    """Import ``bench.<name>`` from the source checkout: its root goes on sys.path once,
    here, so the scripts import ``bench.*`` and ``tests.support`` by their full names."""
    if not (ROOT / "bench" / f"{name}.py").exists():
        raise click.ClickException(
            f"{ROOT / 'bench' / name}.py not found: benchmarks run from a source checkout"
        )
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"bench.{name}")


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
    mod = load_script("chaos")
    sys.exit(mod.main(list(args)))
