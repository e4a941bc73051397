"""What the reconcile loop needs from a runtime, and nothing more.

A runtime finds its instances by labels (containers) or by its own records (processes),
so that whatever is observed — not what the agent remembers — is the truth. Every call
may block (Docker API); the agent calls them from worker threads, never in a tight loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from gridq.errors import GridqError
from gridq.nodeproto import WorkerSpec

ObservedState = Literal["starting", "running", "exited"]


class StartFailed(GridqError):
    """The instance could not be started; ``diagnosis`` says why in plain words."""

    def __init__(self, diagnosis: str) -> None:
        super().__init__(diagnosis)
        self.diagnosis = diagnosis


@dataclass
class Instance:
    """One worker the agent wants running."""

    task: str
    index: int
    instance_id: str
    node_id: str
    spec: WorkerSpec
    env: dict[str, str]
    memory_mb: int

    @property
    def secrets(self) -> list[str]:
        return secrets_of(self.env)

    def started(self, handle: str, started_at: float, metrics_url: str | None) -> Observed:
        """This instance as observed right after a successful start."""
        return Observed(
            instance_id=self.instance_id,
            task=self.task,
            index=self.index,
            spec_hash=self.spec.spec_hash,
            node_id=self.node_id,
            state="running",
            handle=handle,
            started_at=started_at,
            metrics_url=metrics_url,
        )


@dataclass
class Observed:
    """One worker as the runtime sees it."""

    instance_id: str
    task: str
    index: int
    spec_hash: str
    node_id: str
    state: ObservedState
    handle: str = ""  # container id or pid
    exit_code: int | None = None
    started_at: float | None = None
    metrics_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Runtime(Protocol):
    name: str
    platform: str

    def list(self) -> list[Observed]:
        """Every instance of this agent, running or exited (one cheap call)."""
        ...

    def start(self, inst: Instance) -> Observed:
        """Create and start; raise StartFailed with a diagnosis."""
        ...

    def stop(self, obs: Observed, timeout: float) -> None:
        """SIGTERM, wait up to ``timeout``, SIGKILL, remove. Idempotent."""
        ...

    def kill(self, obs: Observed) -> None:
        """SIGKILL now (a second stop signal); removal follows through ``stop``/``remove``."""
        ...

    def collect(self, obs: Observed) -> str:
        """For an exited instance: diagnose it in plain words, then remove it."""
        ...

    def info(self) -> tuple[int, int]:
        """(cpus, memory_mb) available to workers."""
        ...

    def close(self) -> None: ...


def secrets_of(env: dict[str, str]) -> list[str]:
    """Passwords in the worker environment's Redis URLs: masked wherever text leaves us."""
    from gridq.redisurl import password_of

    out = []
    for value in env.values():
        if "://" in value:
            pw = password_of(value)
            if pw:
                out.append(pw)
    return out


def instance_name(task: str, node_id: str, index: int) -> str:
    """gridq-<task>-<node>-<n>, restricted to what Docker accepts in a name."""
    import re

    raw = f"gridq-{task}-{node_id}-{index}"
    return re.sub(r"[^a-zA-Z0-9_.-]", "_", raw)
