"""An idle `gridq worker` stays small: what it imports, and its resident memory.

The issue's target is an idle RSS under 40 MB; the libraries the worker must load
(redis-py, which imports asyncio and ssl, pydantic-settings, prometheus-client, click)
already take about 44 MB, see docs/benchmarks.md. These tests guard what gridq itself
controls: the modules an idle worker loads (exact, so they fail on the import that
caused a regression) and a bound on its RSS with a margin for Python builds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from gridq.queue import Queue
from tests.support import need, wait_for

# The worker writes its sys.modules when the test asks, from inside the idle process.
APP = """
import os, sys, threading, time
from gridq.worker import App

app = App()

@app.default
def echo(item):
    return item

def _report():
    trigger, out = os.environ["FOOTPRINT_TRIGGER"], os.environ["FOOTPRINT_OUT"]
    while not os.path.exists(trigger):
        time.sleep(0.02)
    with open(out + ".tmp", "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
    os.replace(out + ".tmp", out)

threading.Thread(target=_report, daemon=True).start()
"""

# Modules an idle threads-pool worker must not load (each with what it would cost).
FORBIDDEN = (
    "multiprocessing",  # the processes pool only (0.5 MB with pickle)
    "concurrent.futures.process",
    "gridq.hub",  # the hub's web stack: fastapi + starlette + anyio (+7 MB)
    "gridq.node",  # the node agent and the Docker SDK (+7 MB)
    "gridq.worker.celery",
    "fastapi",
    "starlette",
    "uvicorn",
    "anyio",
    "httpx",
    "docker",
    "requests",
    "urllib3",
    "rich",
    "psutil",
    "celery",
    "kombu",
)

# Measured idle (threads pool x8, metrics endpoint on): 46.4 MB in the gridq-worker
# image, 46.2 MB in the dev venv (48.1 MB without .pyc files). The bound leaves room
# for other Python builds and fails on any new import of the size of the web stack.
RSS_BOUND_MB = 54.0


def _rss_mb(pid: int) -> float:
    # smaps_rollup walks the page tables (exact); VmRSS in status may be a per-CPU
    # approximation on recent kernels.
    for name, key in (("smaps_rollup", "Rss:"), ("status", "VmRSS:")):
        try:
            with open(f"/proc/{pid}/{name}") as f:
                for line in f:
                    if line.startswith(key):
                        return int(line.split()[1]) / 1024
        except OSError:
            continue
    raise AssertionError(f"no RSS figure for pid {pid}")


def test_idle_worker_imports_little_and_stays_small(
    redis_conn, redis_url, spawn_worker, tmp_path: Path
):
    if not sys.platform.startswith("linux"):
        need("Linux: the RSS figure comes from /proc")
    trigger, out = tmp_path / "dump-now", tmp_path / "modules.txt"
    env = {
        "INPUT_REDIS_URL": redis_url,
        "INPUT_QUEUE": "fp",
        "OUTPUT_QUEUE": "fp-out",
        "GRIDQ_METRICS_PORT": "0",  # on, as the node and the image set it; any free port
        "FOOTPRINT_TRIGGER": str(trigger),
        "FOOTPRINT_OUT": str(out),
    }
    w = spawn_worker(APP, env=env)
    q = Queue(redis_conn, "fp")
    wait_for(lambda: w.poll() is not None or q.stats()["consumers"] == 1, 20)
    assert w.poll() is None, w.stderr.read() if w.stderr else ""
    time.sleep(1.0)  # every thread has started and gone idle
    rss = _rss_mb(w.pid)

    trigger.touch()
    wait_for(out.exists, 10)
    modules = set(out.read_text().split())
    assert "gridq.worker.worker" in modules  # the dump came from a running worker
    loaded = sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not loaded, f"an idle threads-pool worker imported {loaded}"

    assert rss < RSS_BOUND_MB, f"idle worker RSS {rss:.1f} MB >= {RSS_BOUND_MB} MB"
    assert os.path.exists(f"/proc/{w.pid}")  # measured the live worker, not a leftover


def test_handler_module_import_loads_no_redis_client() -> None:
    """worker/__init__.py promises that `from gridq.worker import App` (what a handler
    module and every producer importing it run) loads no Redis client and no metrics."""
    code = (
        "import sys\n"
        "from gridq.worker import App\n"
        "print(' '.join(m for m in sys.modules if m.split('.')[0] in "
        "('redis', 'hiredis', 'prometheus_client', 'gridq') ))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.split())
    assert "gridq.worker.app" in loaded  # the listing came after the import
    heavy = sorted(m for m in loaded if not m.startswith("gridq"))
    assert not heavy, f"`from gridq.worker import App` imported {heavy}"
    assert "gridq.queue" not in loaded
