"""The process runtime: workers as local subprocesses, for machines without Docker and
for development (``gridq up``).

Each worker runs in its own session/process group, so stopping it reaches the children
a handler may have started (SIGTERM to the group, wait, SIGKILL to the group).

Adoption: every started process is recorded in ``<state_dir>/processes/<instance>.json``
(pid, its start time, spec hash). A restarted agent adopts a recorded process if a
process with that pid and start time is still alive, exactly as the docker runtime
adopts containers by label; a pid reused by an unrelated program never matches.
An adopted process is not our child, so its exit code is unknown (reported as such).

Limits: the process runtime enforces no memory or CPU limit (an address-space rlimit
breaks threaded Python, which reserves large virtual arenas); use the docker runtime
where limits matter.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from gridq.node.config import NodeSettings
from gridq.node.diagnose import diagnose, elf_platform, host_platform, same_platform
from gridq.node.runtime.base import Instance, Observed, StartFailed
from gridq.ports import free_port
from gridq.redisurl import mask_text

log = logging.getLogger("gridq.node")

# The agent's own settings never reach a worker: the node token is a secret.
_PRIVATE_PREFIXES = ("GRIDQ_NODE_", "GRIDQ_HUB_", "GRIDQ_CONFIG")


@dataclass
class _Record:
    instance_id: str
    task: str
    index: int
    spec_hash: str
    node_id: str
    pid: int
    create_time: float
    metrics_port: int
    log: str
    memory_mb: int = 0


class ProcessRuntime:
    name = "process"

    def __init__(
        self,
        settings: NodeSettings,
        agent_id: str,
        *,
        on_event: Callable[[], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.agent_id = agent_id
        self.platform = settings.platform or host_platform()
        self.dir = Path(settings.state_dir) / "processes"
        self.logs = Path(settings.state_dir) / "logs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._records: dict[str, _Record] = {}
        self._secrets: dict[str, list[str]] = {}
        self._adopt()

    def _adopt(self) -> None:
        for path in self.dir.glob("*.json"):
            try:
                rec = _Record(**json.loads(path.read_text()))
            except (ValueError, TypeError):
                path.unlink(missing_ok=True)
                continue
            self._records[rec.instance_id] = rec  # alive or not: list() decides

    def _alive(self, rec: _Record) -> bool:
        proc = self._children.get(rec.instance_id)
        if proc is not None:
            return proc.poll() is None
        try:
            p = psutil.Process(rec.pid)
            return (
                abs(p.create_time() - rec.create_time) < 1.0 and p.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False

    def list(self) -> list[Observed]:
        return [self._observe(rec) for rec in list(self._records.values())]

    def _observe(self, rec: _Record) -> Observed:
        proc = self._children.get(rec.instance_id)
        code = proc.poll() if proc is not None else None
        alive = self._alive(rec)
        return Observed(
            instance_id=rec.instance_id,
            task=rec.task,
            index=rec.index,
            spec_hash=rec.spec_hash,
            node_id=rec.node_id,
            state="running" if alive else "exited",
            handle=str(rec.pid),
            exit_code=None if alive else code,
            started_at=rec.create_time,
            metrics_url=self._metrics_url(rec.metrics_port),
        )

    def _metrics_url(self, port: int) -> str:
        return f"http://{self.settings.advertise_host or '127.0.0.1'}:{port}/metrics"

    def start(self, inst: Instance) -> Observed:
        running = self._records.get(inst.instance_id)
        if running is not None and self._alive(running):
            # Records are keyed by instance id: a second process would overwrite the
            # first one's record and leave it running unseen, even after a drain.
            log.warning(
                "%s is already running (pid %d): not started again", inst.instance_id, running.pid
            )
            return self._observe(running)
        argv = inst.spec.command
        if not argv:
            raise StartFailed(
                "the task has no command: the process runtime runs spec.command "
                "(e.g. ['gridq', 'worker', 'pkg.mod:app'])"
            )
        if argv[0] == "gridq" and shutil.which("gridq") is None:
            # gridq installed in a venv that is not on PATH: use this interpreter's.
            argv = [sys.executable, "-m", "gridq.cli.main", *argv[1:]]
        env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_PREFIXES)}
        env.update(inst.env)
        port = free_port("0.0.0.0")
        env["GRIDQ_METRICS_PORT"] = str(port)
        log_path = self.logs / f"{inst.instance_id}.log"
        with open(log_path, "wb") as logf:
            try:
                proc = subprocess.Popen(
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: stop reaches its children
                    close_fds=True,
                )
            except FileNotFoundError:
                raise StartFailed(f"command not found: {argv[0]}") from None
            except PermissionError:
                raise StartFailed(f"permission denied running {argv[0]}") from None
            except OSError as exc:
                if exc.errno == errno.ENOEXEC:
                    raise StartFailed(self._exec_format(argv[0])) from None
                raise StartFailed(mask_text(f"could not start {argv[0]}: {exc}")) from None
        try:
            created = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            created = time.time()
        rec = _Record(
            instance_id=inst.instance_id,
            task=inst.task,
            index=inst.index,
            spec_hash=inst.spec.spec_hash,
            node_id=inst.node_id,
            pid=proc.pid,
            create_time=created,
            metrics_port=port,
            log=str(log_path),
            memory_mb=inst.memory_mb,
        )
        self._children[inst.instance_id] = proc
        self._secrets[inst.instance_id] = inst.secrets
        self._records[inst.instance_id] = rec
        tmp = self.dir / f"{inst.instance_id}.tmp"
        tmp.write_text(json.dumps(asdict(rec)))
        os.replace(tmp, self.dir / f"{inst.instance_id}.json")
        return inst.started(str(proc.pid), created, self._metrics_url(port))

    def _exec_format(self, prog: str) -> str:
        path = prog if "/" in prog else shutil.which(prog)
        plat = None
        if path:
            with contextlib.suppress(OSError), open(path, "rb") as f:
                plat = elf_platform(f.read(20))
        if plat and not same_platform(plat, self.platform):
            return f"exec format error: {prog} is built for {plat}, this node is {self.platform}"
        return f"exec format error: {prog} is not a program this node ({self.platform}) can run"

    def _wait(self, rec: _Record, timeout: float) -> bool:
        """True once the worker's main process is gone."""
        proc = self._children.get(rec.instance_id)
        if proc is not None:
            try:
                proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._alive(rec):
                return True
            time.sleep(0.05)
        return not self._alive(rec)

    def _signal(self, rec: _Record, sig: signal.Signals) -> None:
        if not self._alive(rec) and sig != signal.SIGKILL:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(rec.pid, sig)

    def stop(self, obs: Observed, timeout: float) -> None:
        rec = self._records.get(obs.instance_id)
        if rec is None:
            return
        if self._alive(rec):
            self._signal(rec, signal.SIGTERM)
            if not self._wait(rec, timeout):
                self._signal(rec, signal.SIGKILL)
                self._wait(rec, 5.0)
        # Stragglers the worker left in its group go too: "remove" means gone.
        if self._group_alive(rec.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(rec.pid, signal.SIGKILL)
        self._forget(rec, keep_log=False)

    def _group_alive(self, pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def kill(self, obs: Observed) -> None:
        rec = self._records.get(obs.instance_id)
        if rec is not None:
            self._signal(rec, signal.SIGKILL)

    def collect(self, obs: Observed) -> str:
        rec = self._records.get(obs.instance_id)
        if rec is None:
            return f"exited {obs.exit_code}"
        proc = self._children.get(rec.instance_id)
        code = proc.poll() if proc is not None else None
        logs = _tail(Path(rec.log))
        # Passwords are kept in memory only (records on disk hold none); mask_text also
        # masks any Redis URL, so an adopted worker's log is safe too.
        secrets = self._secrets.get(rec.instance_id, [])
        diagnosis = diagnose(
            exit_code=code,
            logs=logs,
            node_platform=self.platform,
            secrets=secrets,
        )
        self._forget(rec, keep_log=False)
        return diagnosis

    def _forget(self, rec: _Record, keep_log: bool) -> None:
        self._records.pop(rec.instance_id, None)
        self._children.pop(rec.instance_id, None)
        self._secrets.pop(rec.instance_id, None)
        (self.dir / f"{rec.instance_id}.json").unlink(missing_ok=True)
        if not keep_log:
            Path(rec.log).unlink(missing_ok=True)

    def info(self) -> tuple[int, int]:
        return os.cpu_count() or 1, int(psutil.virtual_memory().total // 2**20)

    def close(self) -> None:
        pass


def _tail(path: Path, size: int = 8192) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            f.seek(max(0, end - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
