"""gridq's benchmarks, a package so its scripts import `bench.*` and `tests.support` by
their full names. Run them from the repository root as modules:

    python -m bench.throughput --jobs 20000
    python -m bench.chaos --scenario load

or through the CLI (`gridq bench throughput`, ...), which puts the source checkout's
root on sys.path once and imports `bench.<name>`. No script edits sys.path itself."""
