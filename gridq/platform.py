"""Architecture and platform names, normalised one way for the hub's placement, the
node's diagnosis and the doctor.

``x86_64``, ``amd64`` and ``linux/amd64`` all name one platform; Docker, ``uname -m``
and ELF headers each spell it their own way.
"""

from __future__ import annotations

import platform as _platform

# uname -m / Debian / Docker spellings -> Docker's (GOARCH) name.
ARCH_ALIASES: dict[str, str] = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "armhf": "arm",
    "arm/v7": "arm",
    "arm/v6": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def norm_arch(arch: str) -> str:
    """``linux/amd64``, ``amd64`` and ``x86_64`` all give ``amd64``."""
    a = arch.strip().lower()
    if a.startswith("linux/"):
        a = a[len("linux/") :]
    return ARCH_ALIASES.get(a, a)


def host_arch() -> str:
    """This machine's architecture, normalised."""
    return norm_arch(_platform.machine())


def host_platform() -> str:
    """This machine's platform as Docker writes it, e.g. ``linux/amd64``."""
    return f"linux/{host_arch()}"


def same_platform(a: str, b: str) -> bool:
    """``linux/arm64/v8`` and ``linux/arm64`` are the same for running a binary."""
    pa, pb = a.split("/"), b.split("/")
    return pa[:2] == pb[:2]
