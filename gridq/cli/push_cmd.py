"""``gridq push``: put items into a queue, pipelined, with a progress bar for large inputs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO

import click

from gridq.cli.common import echo_json, friendly, redis_location

BATCH = 1000


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    for line in stream:
        line = line.rstrip(b"\r\n")
        if line:
            yield line


@click.command()
@click.argument("queue")
@click.argument("items", nargs=-1)
@click.option(
    "--file",
    "file_",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="One item per line; - for standard input.",
)
@click.option(
    "--task", help="Enqueue envelopes for this task name; each item is a JSON array of arguments."
)
@click.option("--count", type=int, help="Push N generated items 1..N (for trying things out).")
@click.option(
    "--redis-url",
    envvar="GRIDQ_REDIS_URL",
    help="Redis URL [env GRIDQ_REDIS_URL; default: the local stack's].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@friendly
def push(
    queue: str,
    items: tuple[str, ...],
    file_: str | None,
    task: str | None,
    count: int | None,
    redis_url: str | None,
    as_json: bool,
) -> None:
    """Push items to QUEUE (raw items, or envelopes with --task).

    \b
    Examples:
      gridq push numbers 1 2 3
      seq 1 100000 | gridq push numbers -
      gridq push jobs --task add '[2, 3]' '[4, 5]'
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from gridq import protocol
    from gridq.queue import Queue

    url = redis_location(redis_url)
    q = Queue.from_url(url, queue)
    source: Iterable[bytes]
    total: int | None = None
    if file_ == "-" or (items == ("-",) and not file_):
        source = _lines(sys.stdin.buffer)
    elif file_:
        fh = open(file_, "rb")  # noqa: SIM115 - closed below
        source = _lines(fh)
    elif count is not None:
        source = (str(i).encode() for i in range(1, count + 1))
        total = count
    else:
        source = (i.encode() for i in items)
        total = len(items)
    if task:

        def wrap(it: Iterable[bytes]) -> Iterator[bytes]:
            for raw in it:
                try:
                    args = json.loads(raw)
                except ValueError:
                    args = [raw.decode(errors="replace")]
                if not isinstance(args, list):
                    args = [args]
                yield q.signer.sign(protocol.encode(task, args))

        source = wrap(source)

    pushed = 0
    started = time.perf_counter()
    show = (total is None or total >= 10_000) and sys.stderr.isatty() and not as_json
    progress = Progress(
        TextColumn("pushing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not show,
        transient=True,
    )
    with progress:
        bar = progress.add_task("push", total=total)
        batch: list[bytes] = []
        for item in source:
            batch.append(item)
            if len(batch) >= BATCH:
                q.push_items(batch)
                pushed += len(batch)
                progress.update(bar, advance=len(batch))
                batch = []
        if batch:
            q.push_items(batch)
            pushed += len(batch)
            progress.update(bar, advance=len(batch))
    elapsed = time.perf_counter() - started
    if as_json:
        echo_json({"queue": queue, "pushed": pushed, "seconds": round(elapsed, 3)})
    else:
        click.echo(f"pushed {pushed} item(s) to {queue} in {elapsed:.2f}s")
