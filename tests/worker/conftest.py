"""Helpers for worker tests: in-process workers on a thread, and real `gridq worker`
subprocesses running an app module written to tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gridq.worker import App
from gridq.worker.settings import WorkerSettings
from gridq.worker.worker import Worker

ROOT = Path(__file__).resolve().parents[2]


class Running:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.worker.run()

    def stop(self, timeout: float = 10.0) -> int | None:
        self.worker._signals = max(self.worker._signals, 1)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"
        return self.code

    def join(self, timeout: float = 20.0) -> int | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not finish"
        return self.code


def settings(**kw: Any) -> WorkerSettings:
    base: dict[str, Any] = {"worker_lease_seconds": 2.0, "worker_grace_seconds": 5.0}
    base.update(kw)
    return WorkerSettings(**base)


@pytest.fixture
def start_worker() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(app: App, *, burst: bool = False, **kw: Any) -> Running:
        r = Running(Worker(app, settings(**kw), burst=burst, install_signals=False))
        started.append(r)
        return r

    yield start
    for r in started:
        if r.thread.is_alive():
            r.stop()


def gridq_cmd() -> list[str]:
    return [sys.executable, "-m", "gridq.cli.main", "worker"]


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """spawn(source, *args, env={...}) -> Popen of `gridq worker mod:app` (stderr captured)."""
    procs: list[subprocess.Popen[str]] = []
    counter = [0]

    def spawn(source: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        counter[0] += 1
        mod = f"app_{counter[0]}"
        (tmp_path / f"{mod}.py").write_text(textwrap.dedent(source))
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("GRIDQ_") and k not in ("INPUT_QUEUE", "OUTPUT_QUEUE")
        }
        full_env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        p = subprocess.Popen(
            [*gridq_cmd(), f"{mod}:app", *args],
            cwd=tmp_path,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(p)
        return p

    yield spawn
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(5)
        for f in (p.stdout, p.stderr):
            if f:
                f.close()
