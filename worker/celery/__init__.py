"""Run an existing Celery app under gridq: native metrics, queue counters, start-up checks.

Two ways in:

- in the user's Celery module: ``from gridq.worker.celery import install; install(app)``,
  then ``celery -A proj worker --pool threads`` as usual;
- with no code change (what the node runs for a task of kind ``celery``)::

      python -m gridq.worker.celery -A proj.celery:app worker -Q q1,q2 --pool threads -c 8 --hostname INSTANCE_ID

  or ``gridq celery ...``, the same. The broker URL comes only from the environment
  (``CELERY_BROKER_URL``, else ``INPUT_REDIS_URL``), never from the command line,
  where ``ps`` would show it.

One concept per module, imported in this order (no cycles):

- ``settings``: ``CelerySettings``, the environment, parsed once; bad values refuse;
- ``checks``: the start-up checks (configuration traps), pure functions of the app;
- ``metrics``: the native worker's Prometheus metrics, reused or redefined for prefork;
- ``stats``: the hub's ``gridq:q:{queue}:stats`` counters, batched to Redis;
- ``limits``: task time limits under the threads and solo pools, which Celery ignores;
- ``forks``: default signal handlers for processes a task forks;
- ``instrumentation``: the Celery signal handlers that drive all of the above;
- ``wiring``: ``install(app)``, connecting them to Celery's signals (not a module named
  ``install``, which the function of that name would shadow);
- ``command``: the ``python -m gridq.worker.celery`` / ``gridq celery`` entry point.

Importing this package does not import Celery; ``install()`` and ``main()`` do. The
queue depth the hub shows lives in core, ``gridq.celery_depth``, re-exported here.
"""

from __future__ import annotations

from gridq.celery_depth import CeleryDepth, celery_queue_depth, celery_queue_depth_detail
from gridq.worker.celery.command import USAGE, build_argv, main
from gridq.worker.celery.instrumentation import Instrumentation
from gridq.worker.celery.settings import CelerySettings
from gridq.worker.celery.wiring import install

__all__ = [
    "USAGE",
    "CeleryDepth",
    "CelerySettings",
    "Instrumentation",
    "build_argv",
    "celery_queue_depth",
    "celery_queue_depth_detail",
    "install",
    "main",
]
