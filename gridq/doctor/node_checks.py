"""Checks of a node machine (``gridq doctor --node``): the Docker engine and its socket,
image architecture against the engine's, disk, memory budget, and whether worker
containers on the configured network reach their task's Redis.

The reachability probe runs a short-lived container on the workers' network. No image
is pulled: it uses a configured probe image, else the task's own image, else a local
busybox-like image; the container is removed afterwards.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psutil

from gridq.doctor.checks import Check, fail, ok, warn
from gridq.doctor.task_checks import TaskInfo
from gridq.platform import norm_arch
from gridq.redisurl import parse_multi

DISK_WARN_GB = 5.0
DISK_FAIL_GB = 1.0
PROBE_LABEL = "gridq.doctor"
TARGET = "this node"

_PROBE_PY = r"""
import socket, sys
h, p = sys.argv[1], int(sys.argv[2])
try:
    ip = socket.getaddrinfo(h, p, type=socket.SOCK_STREAM)[0][4][0]
    print("RESOLVE ok", ip)
except Exception as e:
    print("RESOLVE fail", e); sys.exit(0)
try:
    s = socket.create_connection((h, p), 3)
    s.sendall(b"PING\r\nQUIT\r\n")
    print("CONNECT ok", s.recv(200).split(b"\r\n")[0].decode("utf-8", "replace"))
except Exception as e:
    print("CONNECT fail", e)
"""

_PROBE_SH = """
if command -v python3 >/dev/null 2>&1; then python3 -c "$GRIDQ_PROBE_PY" "$H" "$P"
elif command -v nc >/dev/null 2>&1; then echo "NC $(printf 'PING\\r\\nQUIT\\r\\n' | nc -w 3 "$H" "$P" 2>&1 | head -n 1)"
else echo NOTOOL; fi
"""


@dataclass
class NodeConfig:
    parallelism: int
    container_memory_mb: int
    network: str
    probe_image: str | None = None
    hostname: str | None = None
    runtime: str | None = None  # None: not set here (ask the hub what this node runs)

    @classmethod
    def from_env(cls, probe_image: str | None = None) -> NodeConfig:
        """The node agent's settings as the environment gives them (same defaults)."""
        par = os.environ.get("GRIDQ_NODE_PARALLELISM")
        return cls(
            parallelism=int(par) if par else (os.cpu_count() or 1),
            container_memory_mb=int(os.environ.get("GRIDQ_NODE_CONTAINER_MEMORY") or 1024),
            network=os.environ.get("GRIDQ_NODE_DOCKER_NETWORK") or "bridge",
            probe_image=probe_image or os.environ.get("GRIDQ_DOCTOR_PROBE_IMAGE") or None,
            hostname=os.environ.get("GRIDQ_NODE_NAME") or None,
            runtime=os.environ.get("GRIDQ_NODE_RUNTIME") or None,
        )


# The checks that look at Docker, and why none applies to a process-runtime node.
_DOCKER_ONLY = {
    "node.docker": "workers run as local processes, so no Docker engine is needed",
    "node.disk": "it measures Docker's data root; process workers write no images or layers",
    "node.image-arch": "the process runtime runs a task's command, never an image",
    "node.network": "workers run on this host's network, not in a container network",
}


def skipped_for_process() -> list[Check]:
    """One ``ok`` row per Docker check, saying it was skipped and why."""
    return [
        ok(name, f"skipped on the process runtime: {why}", TARGET)
        for name, why in _DOCKER_ONLY.items()
    ]


def docker_engine() -> tuple[Check, Any]:
    """(check, docker client or None)."""
    try:
        import docker
    except ImportError:
        return fail(
            "node.docker", "the docker Python package is missing", "pip install docker.", TARGET
        ), None
    try:
        client = docker.from_env(timeout=10)
        client.ping()
        info = client.info()
    except Exception as exc:
        text = str(exc)
        host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        if "Permission denied" in text or "PermissionError" in text:
            return fail(
                "node.docker",
                f"the Docker socket ({host}) refuses this user (uid {os.getuid()})",
                "Add this user to the docker group (sudo usermod -aG docker $USER, then log in again) or run the node as root.",
                TARGET,
            ), None
        if "No such file" in text or "FileNotFoundError" in text or "refused" in text.lower():
            return fail(
                "node.docker",
                f"no Docker engine answers at {host}",
                "Start the Docker engine (systemctl start docker) or set DOCKER_HOST to where it listens.",
                TARGET,
            ), None
        return fail(
            "node.docker",
            f"Docker engine at {host}: {text[:200]}",
            "Make the Docker engine reachable and healthy.",
            TARGET,
        ), None
    return ok(
        "node.docker",
        f"Docker {info.get('ServerVersion', '?')} on {info.get('OSType', 'linux')}/{norm_arch(str(info.get('Architecture', '')))}",
        TARGET,
    ), client


def engine_platform(client: Any) -> tuple[str, str]:
    info = client.info()
    return str(info.get("OSType") or "linux"), norm_arch(str(info.get("Architecture") or ""))


def image_for(task: TaskInfo, os_: str, arch: str) -> str | None:
    for key in (f"{os_}/{arch}", arch):
        if key in task.images:
            return task.images[key]
    for key, ref in task.images.items():
        if key.startswith(f"{os_}/{arch}/"):
            return ref
    return task.image


def check_arch(client: Any, tasks: list[TaskInfo]) -> list[Check]:
    """Each task's image architecture against the engine's: exec format error, before it happens."""
    import docker.errors

    os_, arch = engine_platform(client)
    out: list[Check] = []
    for t in tasks:
        target = f"task {t.name}"
        if not t.image and not t.images:
            out.append(ok("node.image-arch", "no image (process runtime)", target))
            continue
        ref = image_for(t, os_, arch)
        if ref is None:
            out.append(
                fail(
                    "node.image-arch",
                    f"the task has images for {', '.join(sorted(t.images))} but none for {os_}/{arch}",
                    f"Add an image for {os_}/{arch} to the task's images, or constrain it to the platforms it has.",
                    target,
                )
            )
            continue
        try:
            img = client.images.get(ref)
        except docker.errors.ImageNotFound:
            out.append(
                warn(
                    "node.image-arch",
                    f"image {ref} is not on this machine, so its architecture is unknown until it is pulled",
                    f"Pull or load it here (docker pull {ref}) to check it before the node starts it.",
                    target,
                )
            )
            continue
        img_arch = norm_arch(str(img.attrs.get("Architecture") or ""))
        img_os = str(img.attrs.get("Os") or "linux")
        if (img_os, img_arch) != (os_, arch):
            out.append(
                fail(
                    "node.image-arch",
                    f"image {ref} is built for {img_os}/{img_arch} but this engine runs {os_}/{arch}: containers will die with 'exec format error'",
                    f"Build the image for {os_}/{arch} (docker buildx --platform {os_}/{arch}) or give the task per-platform images.",
                    target,
                )
            )
        else:
            out.append(
                ok(
                    "node.image-arch",
                    f"image {ref} is {img_os}/{img_arch}, like the engine",
                    target,
                )
            )
    return out


def check_disk(client: Any) -> Check:
    root = str(client.info().get("DockerRootDir") or "/var/lib/docker")
    path = root if os.path.exists(root) else "/"
    usage = shutil.disk_usage(path)
    free_gb = usage.free / 1024**3
    saw = f"{free_gb:.1f} GB free under {path}"
    if free_gb < DISK_FAIL_GB:
        return fail(
            "node.disk",
            saw,
            "Free disk space for images (docker system prune) or grow the disk.",
            TARGET,
        )
    if free_gb < DISK_WARN_GB:
        return warn(
            "node.disk",
            saw,
            "Free disk space for images (docker system prune) or grow the disk.",
            TARGET,
        )
    return ok("node.disk", saw, TARGET)


def check_memory(cfg: NodeConfig, total_bytes: int | None = None) -> Check:
    total_mb = (total_bytes or psutil.virtual_memory().total) // (1024 * 1024)
    budget = cfg.parallelism * cfg.container_memory_mb
    saw = f"{cfg.parallelism} workers x {cfg.container_memory_mb} MB = {budget} MB of {total_mb} MB"
    if budget > total_mb:
        return fail(
            "node.memory",
            saw + ": busy workers will be OOM-killed (exit 137)",
            f"Lower GRIDQ_NODE_PARALLELISM to {max(1, int(total_mb * 0.9) // max(cfg.container_memory_mb, 1))} or GRIDQ_NODE_CONTAINER_MEMORY so the product fits in memory.",
            TARGET,
        )
    if budget > 0.9 * total_mb:
        return warn(
            "node.memory",
            saw + ": little left for the system",
            "Leave about 10% of memory for the system: lower parallelism or container memory.",
            TARGET,
        )
    return ok("node.memory", saw, TARGET)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _pick_probe_images(client: Any, cfg: NodeConfig, task: TaskInfo, arch: str) -> list[str]:
    import docker.errors

    cands: list[str] = []
    if cfg.probe_image:
        cands.append(cfg.probe_image)
    ref = image_for(task, "linux", arch)
    if ref:
        cands.append(ref)
    try:
        for img in client.images.list():
            if norm_arch(str(img.attrs.get("Architecture") or "")) != arch:
                continue
            for tag in img.tags:
                if any(w in tag for w in ("busybox", "alpine")):
                    cands.append(tag)
    except docker.errors.APIError:
        pass
    seen: list[str] = []
    for c in cands:
        if c not in seen:
            seen.append(c)
    return seen


def probe(client: Any, image: str, network: str, host: str, port: int, timeout: float = 20) -> str:
    """Run the probe in a throwaway container; return its output (first lines)."""
    container = client.containers.run(
        image,
        [_PROBE_SH],
        entrypoint=["sh", "-c"],
        environment={"H": host, "P": str(port), "GRIDQ_PROBE_PY": _PROBE_PY},
        network=network,
        detach=True,
        labels={PROBE_LABEL: "probe"},
        mem_limit="64m",
    )
    try:
        try:
            container.wait(timeout=timeout)
        except Exception:
            return "TIMEOUT"
        return str(container.logs(stdout=True, stderr=True).decode("utf-8", "replace")).strip()
    finally:
        try:
            container.remove(force=True)
        except Exception:
            pass


def check_network(client: Any, cfg: NodeConfig, tasks: list[TaskInfo]) -> list[Check]:
    """From a container on the workers' network: does each task's Redis host resolve and answer?"""
    import docker.errors

    out: list[Check] = []
    if cfg.network not in ("host", "bridge", "none"):
        try:
            client.networks.get(cfg.network)
        except docker.errors.NotFound:
            return [
                fail(
                    "node.network",
                    f"the workers' network {cfg.network!r} (GRIDQ_NODE_DOCKER_NETWORK) does not exist",
                    f"Create it (docker network create {cfg.network}) or set GRIDQ_NODE_DOCKER_NETWORK to an existing network.",
                    TARGET,
                )
            ]
    _, arch = engine_platform(client)
    for t in tasks:
        if not t.image and not t.images:
            continue
        done: set[tuple[str, int]] = set()
        for url in (t.input_redis, t.out_redis):
            multi = parse_multi(url)
            p = urlsplit(url)
            if multi:  # a cluster node or a sentinel: the first one named
                host, port = multi.hosts[0]
            elif p.scheme == "unix" or not p.hostname:
                continue
            else:
                host, port = p.hostname, p.port or 6379
            if (host, port) in done:
                continue
            done.add((host, port))
            out.append(_probe_one(client, cfg, t, arch, host, port))
    return out


def _redis_answered(text: str) -> bool:
    """Did the probe get a RESP reply (+PONG, or an error such as -NOAUTH: Redis is there)?"""
    for mark in ("CONNECT ok ", "NC "):
        if mark in text:
            reply = text.split(mark, 1)[1].lstrip()
            return reply[:1] in ("+", "-")
    return False


def _probe_one(client: Any, cfg: NodeConfig, t: TaskInfo, arch: str, host: str, port: int) -> Check:
    import docker.errors

    target = f"task {t.name}"
    where = f"{host}:{port}"
    loop = _is_loopback(host) and cfg.network != "host"
    result = ""
    used = ""
    for image in _pick_probe_images(client, cfg, t, arch):
        try:
            result = probe(client, image, cfg.network, host, port)
        except (docker.errors.ImageNotFound, docker.errors.APIError):
            continue
        if result and "NOTOOL" not in result and "not found" not in result.split("\n")[0]:
            used = image
            break
    if not used:
        return warn(
            "node.network",
            f"no local image can run the probe for {where} (none has sh with python3 or nc)",
            "Set GRIDQ_DOCTOR_PROBE_IMAGE (or --probe-image) to a local busybox image.",
            target,
        )
    net = f"network {cfg.network!r}"
    line = result.strip().splitlines()
    text = " ".join(line)[:200]
    resolved = not ("RESOLVE fail" in text or "bad address" in text)
    answered = _redis_answered(text)
    if not resolved:
        return fail(
            "node.network",
            f"from a container on {net}, the Redis host {host!r} does not resolve",
            f"Put the workers on the network where {host!r} is defined (GRIDQ_NODE_DOCKER_NETWORK) or use an address they can resolve.",
            target,
        )
    if answered:
        return ok("node.network", f"from a container on {net}, Redis at {where} answers", target)
    if loop:
        return fail(
            "node.network",
            f"the task's Redis is {where}, which inside a container on {net} is the container itself: nothing answers ({text})",
            "Use an address of Redis that containers reach (its service name on that network or the host's IP), or run the workers with GRIDQ_NODE_DOCKER_NETWORK=host.",
            target,
        )
    return fail(
        "node.network",
        f"from a container on {net}, Redis at {where} does not answer ({text})",
        "Open the Redis port to the containers' network (firewall, bind address, protected-mode) or put the workers on Redis's network.",
        target,
    )
