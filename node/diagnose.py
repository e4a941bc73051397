"""Turn a failed worker (exit code, OOM flag, last log lines, image facts) into words a
user can act on. These are the failures troubleshooting reports spend hours on, so the
message names the cause, not just the symptom. Everything returned is masked: log lines
may quote a Redis URL with its password.
"""

from __future__ import annotations

import signal

from gridq.errors import EXIT_CONFIG, EXIT_REDIS_AUTH, EXIT_REDIS_UNAVAILABLE
from gridq.platform import host_platform, same_platform
from gridq.redisurl import mask_text

MAX_LEN = 400

# ELF e_machine -> Docker's platform names.
_ELF_MACHINES = {
    0x03: "linux/386",
    0x08: "linux/mips",
    0x14: "linux/ppc",
    0x15: "linux/ppc64le",
    0x16: "linux/s390x",
    0x28: "linux/arm",
    0x3E: "linux/amd64",
    0xB7: "linux/arm64",
    0xF3: "linux/riscv64",
}


def elf_platform(head: bytes) -> str | None:
    """The platform an ELF binary is built for, from its first 20 bytes."""
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    little = head[5] == 1
    machine = int.from_bytes(head[18:20], "little" if little else "big")
    return _ELF_MACHINES.get(machine, f"ELF machine {machine:#x}")


def last_line(logs: str) -> str:
    for line in reversed(logs.splitlines()):
        if line.strip():
            return line.strip()
    return ""


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LEN else text[: MAX_LEN - 3] + "..."


def diagnose(
    *,
    exit_code: int | None,
    logs: str = "",
    oom_killed: bool = False,
    memory_mb: int | None = None,
    node_platform: str | None = None,
    image_platform: str | None = None,
    binary_platform: str | None = None,
    secrets: list[str] | None = None,
) -> str:
    """One sentence for the hub's status page (InstanceStatus.error)."""
    node = node_platform or host_platform()
    tail = mask_text(last_line(logs), secrets)
    low = logs.lower()
    if oom_killed:
        limit = f" at the {memory_mb} MB limit" if memory_mb else ""
        code = exit_code if exit_code is not None else 137
        return f"OOM-killed (exit {code}){limit}: raise the task's memory or the node's container_memory"
    if "exec format error" in low:
        other = binary_platform or image_platform
        if other and not same_platform(other, node):
            return f"exec format error: the image is for {other}, this node is {node}"
        return (
            f"exec format error: the program is not built for this node ({node}); "
            "build or pull the image for this platform"
        )
    if exit_code == EXIT_REDIS_AUTH:
        return "Redis rejected the credentials (check the password in the task's Redis URL)"
    if exit_code == EXIT_REDIS_UNAVAILABLE:
        return _clip(
            f"Redis unreachable (exit {exit_code}): {tail}" if tail else "Redis unreachable"
        )
    if exit_code == EXIT_CONFIG:
        return _clip(f"configuration error (exit {exit_code}): {tail}")
    if exit_code is not None and exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return _clip(f"killed by {name}" + (f": {tail}" if tail else ""))
    if exit_code is None:
        return _clip(
            f"exited (exit code unknown): {tail}" if tail else "exited (exit code unknown)"
        )
    return _clip(f"exited {exit_code}: {tail}" if tail else f"exited {exit_code}")


def start_failure(
    message: str, *, image: str | None = None, secrets: list[str] | None = None
) -> str:
    """A worker that could not even be created or started (Docker API error text)."""
    text = mask_text(message, secrets)
    low = text.lower()
    if "exec format error" in low:
        return f"exec format error: {_clip(text)}"
    if "executable file not found" in low or "no such file or directory" in low:
        return _clip(f"command not found in the image {image or ''}: {text}".replace("  ", " "))
    return _clip(f"could not start the worker: {text}")
