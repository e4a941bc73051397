"""An SDK worker: the handlers of one task, run by ``gridq worker myjobs:app``.

The node that starts this container injects the queues (INPUT_REDIS_URL, INPUT_QUEUE,
OUTPUT_QUEUE, ...), so ``App()`` needs no arguments.
"""

from __future__ import annotations

from gridq.worker import App

app = App()


@app.task(retries=3, backoff=1.0, timeout=60)
def add(x: int, y: int) -> int:
    """A named task: producers call ``add.delay(2, 3)`` or ``Queue.enqueue("add", 2, 3)``."""
    return x + y


@app.default
def square(item: bytes) -> str:
    """Raw items (a plain ``LPUSH grid:in 7``), as IDM-GridCore producers send them.

    The result keeps the input next to its square so a consumer of the output queue can
    match them without any envelope.
    """
    n = int(item)
    return f"{n}:{n * n}"
