"""``python -m gridq.worker.celery``: the entry point lives in ``command`` so that this
``__main__`` copy holds no state (a user module calling ``install()`` must find the
canonical modules)."""

from __future__ import annotations

import sys

from gridq.worker.celery.command import main

if __name__ == "__main__":
    sys.exit(main())
