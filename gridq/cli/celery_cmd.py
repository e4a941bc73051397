"""``gridq celery``: run an existing Celery app as a gridq worker (instrumented, checked)."""

from __future__ import annotations

import sys

import click


@click.command(
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "help_option_names": [],
    }
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def celery(args: tuple[str, ...]) -> None:
    """Run a Celery worker with gridq's metrics and start-up checks (threads pool by default).

    \b
    Example:
      CELERY_BROKER_URL=redis://:pw@localhost:6379/0 gridq celery -A proj.celery:app worker -Q jobs

    The app also comes from GRIDQ_CELERY_APP, the queues from INPUT_QUEUE, the broker
    from CELERY_BROKER_URL or INPUT_REDIS_URL (never from the command line).
    """
    if args and args[0] in ("-h", "--help"):
        click.echo(celery.help)
        return
    from gridq.worker.celery.command import main

    sys.exit(main(list(args)))
