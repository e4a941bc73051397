"""``gridq push``: put items into a queue, pipelined, with a progress bar for large inputs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING

import click

from gridq.cli.common import echo_json, friendly, redis_location

if TYPE_CHECKING:
    from gridq.queue import Queue

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
    "--wait",
    is_flag=True,
    help="With --task: wait for each job and print its result (one JSON value per line).",
)
@click.option("--timeout", type=float, default=None, help="With --wait: seconds to wait per job.")
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
    wait: bool,
    timeout: float | None,
    redis_url: str | None,
    as_json: bool,
) -> None:
    """Push items to QUEUE (raw items, or envelopes with --task).

    \b
    Examples:
      gridq push numbers 1 2 3
      seq 1 100000 | gridq push numbers -
      gridq push jobs --task add '[2, 3]' '[4, 5]'
      gridq push jobs --task add --wait '[2, 3]'    # prints 5 once a worker ran it
    """
    from gridq.queue import Queue

    q = Queue.from_url(redis_location(redis_url), queue)
    source, total = _source(items, file_, count)
    if wait:
        if not task:
            raise click.UsageError("--wait needs --task (raw items have no job record)")
        _push_and_wait(q, task, source, timeout, as_json)
        return
    if task:
        source = map(q.signer.sign, _envelopes(task, source))  # signed with GRIDQ_SIGNING_KEY
    show = (total is None or total >= 10_000) and sys.stderr.isatty() and not as_json
    started = time.perf_counter()
    pushed = _push_all(q, source, total, show)
    elapsed = time.perf_counter() - started
    if as_json:
        echo_json({"queue": queue, "pushed": pushed, "seconds": round(elapsed, 3)})
    else:
        click.echo(f"pushed {pushed} item(s) to {queue} in {elapsed:.2f}s")


def _source(
    items: tuple[str, ...], file_: str | None, count: int | None
) -> tuple[Iterable[bytes], int | None]:
    """The items to push and how many there are (None: unknown until read)."""
    if file_ == "-" or (items == ("-",) and not file_):
        return _lines(sys.stdin.buffer), None
    if file_:
        fh = open(file_, "rb")  # noqa: SIM115 - read to the end by the push loop
        return _lines(fh), None
    if count is not None:
        return (str(i).encode() for i in range(1, count + 1)), count
    return (i.encode() for i in items), len(items)


def _envelopes(task: str, items: Iterable[bytes]) -> Iterator[bytes]:
    """Each item as a job of ``task``: a JSON array is its arguments, anything else one."""
    from gridq import protocol

    for raw in items:
        try:
            args = json.loads(raw)
        except ValueError:
            args = [raw.decode(errors="replace")]
        if not isinstance(args, list):
            args = [args]
        yield protocol.encode(task, args)


def _push_all(q: Queue, source: Iterable[bytes], total: int | None, show: bool) -> int:
    """Push in pipelined batches of BATCH, with a progress bar if ``show``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    pushed = 0
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
    return pushed


def _args_of(raw: bytes) -> list[object]:
    try:
        args = json.loads(raw)
    except ValueError:
        args = [raw.decode(errors="replace")]
    return args if isinstance(args, list) else [args]


def _push_and_wait(
    q: Queue, task: str, source: Iterable[bytes], timeout: float | None, as_json: bool
) -> None:
    """Enqueue each item as a job (with its record), then print results in order."""
    from gridq.jobs import JobCancelled, JobFailed

    handles = [q.enqueue(task, *_args_of(raw)) for raw in source]
    failed = 0
    for h in handles:
        try:
            value = h.get(timeout=timeout)
            out: dict[str, object] = {"id": h.id, "status": "succeeded", "result": value}
        except JobFailed as exc:
            failed += 1
            out = {"id": h.id, "status": "dead", "error": f"{exc.error_type}: {exc.error}"}
        except JobCancelled:
            failed += 1
            out = {"id": h.id, "status": "cancelled"}
        except TimeoutError:
            failed += 1
            out = {"id": h.id, "status": h.status(), "error": "timed out waiting"}
        if as_json:
            echo_json(out)
        elif out["status"] == "succeeded":
            click.echo(json.dumps(out["result"]))
        else:
            click.echo(f"job {h.id}: {out['status']} {out.get('error', '')}".rstrip(), err=True)
    if failed:
        raise SystemExit(1)
