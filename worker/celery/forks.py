"""Processes a task forks under the threads pool get default signal handlers back.

The Celery worker's SIGTERM handler only sets a "stop soon" flag. A child forked
from a task thread inherits it, so ``Pool.terminate()`` (what ``with Pool():``
does on exit) sends SIGTERM to children that do not die, then joins them forever:
the task hangs. Billiard resets handlers in its own prefork children; forks from
task code under the threads pool get the defaults back here.
"""

from __future__ import annotations

import os
import signal
import threading

_registered = threading.Event()


def _default_signals() -> None:
    for name in ("SIGTERM", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (ValueError, OSError):
                pass
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except (ValueError, OSError):
        pass


def reset_signals_in_forked_children() -> None:
    """From now on, every ``os.fork()`` child starts with default handlers (once per process)."""
    if not _registered.is_set():
        _registered.set()
        os.register_at_fork(after_in_child=_default_signals)
