"""The docker runtime: workers as containers, through the Docker Engine API (docker SDK).

Observation is one ``GET /containers/json`` filtered by our agent label per reconcile
pass, plus the engine's event stream to wake the loop when a worker dies; nothing polls
a container many times a second (IDM-GridCore opened a wait request per container every
100 ms). Exited containers are inspected once, diagnosed and removed, so they never pile up.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import tarfile
import threading
import time
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
from docker.types import LogConfig

from gridq.contract import (
    ENV_METRICS_PORT,
    LABEL_AGENT,
    LABEL_GRIDCORE_TASK,
    LABEL_INDEX,
    LABEL_INSTANCE,
    LABEL_METRICS_PORT,
    LABEL_NODE,
    LABEL_SPEC,
    LABEL_TASK,
)
from gridq.node.config import NodeSettings
from gridq.node.diagnose import diagnose, elf_platform, start_failure
from gridq.node.runtime.base import Instance, Observed, StartFailed, instance_name, secrets_of
from gridq.platform import norm_arch, same_platform
from gridq.ports import free_port
from gridq.redisurl import mask_text

log = logging.getLogger("gridq.node")

_EXITED = re.compile(r"Exited \((-?\d+)\)")
# A failed pull is not retried for this long by other instances of the same image.
NEGATIVE_CACHE_SECONDS = 10.0


def _short(exc: BaseException) -> str:
    if isinstance(exc, docker.errors.APIError):
        text = str(exc.explanation or exc)
    else:
        text = str(exc)
    return mask_text(text.strip().splitlines()[0] if text.strip() else type(exc).__name__)


class DockerRuntime:
    name = "docker"

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
        self._on_event = on_event
        self._on_error = on_error
        try:
            if settings.docker_host:
                self.client = docker.DockerClient(base_url=settings.docker_host)
            else:
                self.client = docker.from_env()
            info = self.client.info()
        except docker.errors.DockerException as exc:
            raise RuntimeError(
                f"cannot reach the Docker engine: {_short(exc)} "
                "(is dockerd running? is /var/run/docker.sock mounted?)"
            ) from None
        self.platform = (
            settings.platform
            or f"{info.get('OSType', 'linux')}/{norm_arch(info.get('Architecture', ''))}"
        )
        self._cpus = int(info.get("NCPU") or 1)
        self._mem_mb = int(info.get("MemTotal") or 0) // 2**20
        self.network = settings.docker_network or "bridge"
        self._image_lock = threading.Lock()
        self._pull_locks: dict[str, threading.Lock] = {}
        self._ready: set[str] = set()
        self._failed: dict[str, tuple[float, StartFailed]] = {}
        self._closed = threading.Event()
        self._events: Any = None
        self._events_thread: threading.Thread | None = None
        if on_event is not None:
            self._events_thread = threading.Thread(
                target=self._watch_events, name="gridq-docker-events", daemon=True
            )
            self._events_thread.start()

    # -- observation --------------------------------------------------------------------

    def list(self) -> list[Observed]:
        try:
            # sparse=True: one API call; the SDK would otherwise inspect every container.
            found = self.client.containers.list(
                all=True, sparse=True, filters={"label": f"{LABEL_AGENT}={self.agent_id}"}
            )
        except docker.errors.DockerException:
            self._error("list")
            raise
        out = []
        for c in found:
            a = c.attrs
            labels = a.get("Labels") or {}
            state = a.get("State", "")
            if state == "removing":
                continue
            exit_code = None
            if state in ("running", "restarting", "paused"):
                obs_state = "running"
            elif state == "created":
                obs_state = "starting"
            else:
                obs_state = "exited"
                m = _EXITED.search(a.get("Status", ""))
                exit_code = int(m.group(1)) if m else None
            try:
                index = int(labels.get(LABEL_INDEX, "0"))
            except ValueError:
                index = 0
            out.append(
                Observed(
                    instance_id=labels.get(LABEL_INSTANCE, ""),
                    task=labels.get(LABEL_TASK, ""),
                    index=index,
                    spec_hash=labels.get(LABEL_SPEC, ""),
                    node_id=labels.get(LABEL_NODE, ""),
                    state=obs_state,  # type: ignore[arg-type]
                    handle=a.get("Id", ""),
                    exit_code=exit_code,
                    started_at=float(a.get("Created") or 0) or None,
                    metrics_url=self._metrics_url(a, labels),
                )
            )
        return out

    def _metrics_url(self, attrs: dict[str, Any], labels: dict[str, str]) -> str | None:
        port = labels.get(LABEL_METRICS_PORT)
        if not port:
            return None
        if self.network == "host":
            host = self.settings.advertise_host or "127.0.0.1"
            return f"http://{host}:{port}/metrics"
        nets = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        net = nets.get(self.network) or next(iter(nets.values()), None)
        ip = (net or {}).get("IPAddress")
        return f"http://{ip}:{port}/metrics" if ip else None

    def _watch_events(self) -> None:
        filters = {
            "type": "container",
            "label": f"{LABEL_AGENT}={self.agent_id}",
            "event": ["die", "oom"],
        }
        while not self._closed.is_set():
            try:
                self._events = self.client.events(decode=True, filters=filters)
                for _ in self._events:
                    if self._on_event:
                        self._on_event()
            except Exception:
                if self._closed.is_set():
                    return
                self._error("events")
            # The stream ended (engine restart): the regular list keeps us correct
            # meanwhile; reconnect without hammering.
            self._closed.wait(2.0)

    # -- images -------------------------------------------------------------------------

    def image_for(self, inst: Instance) -> str:
        spec = inst.spec
        images = spec.images
        ref = images.get(self.platform)
        if ref is None:
            for plat, candidate in images.items():
                if same_platform(plat, self.platform):
                    ref = candidate
                    break
        ref = ref or spec.image
        if not ref:
            have = ", ".join(sorted(images)) or "none"
            raise StartFailed(
                f"no image for this node's platform {self.platform} (the task has: {have})"
            )
        return ref

    def _image_platform(self, attrs: dict[str, Any]) -> str:
        plat = f"{attrs.get('Os', 'linux')}/{norm_arch(attrs.get('Architecture', ''))}"
        return plat + (f"/{attrs['Variant']}" if attrs.get("Variant") else "")

    def ensure_image(self, ref: str) -> None:
        """Pull ``ref`` for this node's platform unless a matching one is local.

        Once per node and image: concurrent starts of the same image wait for one pull."""
        if ref in self._ready:
            return
        with self._image_lock:
            lock = self._pull_locks.setdefault(ref, threading.Lock())
        with lock:
            if ref in self._ready:
                return
            failed = self._failed.get(ref)
            if failed and time.monotonic() - failed[0] < NEGATIVE_CACHE_SECONDS:
                raise failed[1]
            local_platform = None
            try:
                img = self.client.images.get(ref)
                local_platform = self._image_platform(img.attrs)
                if same_platform(local_platform, self.platform):
                    self._ready.add(ref)
                    return
            except docker.errors.ImageNotFound:
                pass
            except docker.errors.DockerException:
                self._error("image_inspect")
                raise
            # Missing, or present for another architecture (which does not count).
            log.info("pulling %s for %s", ref, self.platform)
            try:
                self.client.images.pull(ref, platform=self.platform)
            except docker.errors.DockerException as exc:
                self._error("pull")
                if local_platform:
                    err = StartFailed(
                        f"exec format error: the image is for {local_platform}, this node is "
                        f"{self.platform} (no {self.platform} variant could be pulled: {_short(exc)})"
                    )
                else:
                    err = StartFailed(f"image not found: {ref} ({_short(exc)})")
                self._failed[ref] = (time.monotonic(), err)
                raise err from None
            self._failed.pop(ref, None)
            self._ready.add(ref)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, inst: Instance) -> Observed:
        ref = self.image_for(inst)
        self.ensure_image(ref)
        name = instance_name(inst.task, inst.node_id, inst.index)
        port = free_port("0.0.0.0") if self.network == "host" else self.settings.worker_metrics_port
        labels = self._labels(inst, port)
        kwargs = self._create_args(inst, name, port, labels)
        container = self._create(ref, name, kwargs, inst)
        self._run(container, ref, inst)
        return inst.started(
            container.id or "", time.time(), self._metrics_url(container.attrs, labels)
        )

    def _labels(self, inst: Instance, port: int) -> dict[str, str]:
        """What ``list`` finds the container by, and reads its instance back from."""
        return {
            LABEL_AGENT: self.agent_id,
            LABEL_TASK: inst.task,
            LABEL_NODE: inst.node_id,
            LABEL_INSTANCE: inst.instance_id,
            LABEL_INDEX: str(inst.index),
            LABEL_SPEC: inst.spec.spec_hash,
            LABEL_METRICS_PORT: str(port),
            LABEL_GRIDCORE_TASK: inst.task,
        }

    def _create_args(
        self, inst: Instance, name: str, port: int, labels: dict[str, str]
    ) -> dict[str, Any]:
        """The container's configuration: limits, confinement, logs, command."""
        s = self.settings
        env = dict(inst.env)
        env[ENV_METRICS_PORT] = str(port)
        kwargs: dict[str, Any] = {
            "name": name,
            "environment": env,
            "labels": labels,
            # Swap equal to memory: the limit is the limit, no silent swapping past it.
            "mem_limit": f"{inst.memory_mb}m",
            "memswap_limit": f"{inst.memory_mb}m",
            "pids_limit": s.pids_limit,
            "privileged": False,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "network": self.network,
            "read_only": s.read_only,
            "log_config": LogConfig(
                type="json-file",
                config={"max-size": s.log_max_size, "max-file": str(s.log_max_file)},
            ),
            "stop_signal": "SIGTERM",
            "detach": True,
        }
        # Default: an equal share of the node's CPUs per slot (docs/node.md).
        cpus = inst.spec.resources.cpus or self._cpus / max(1, s.slots)
        kwargs["nano_cpus"] = int(cpus * 1e9)
        if inst.spec.command:
            kwargs["command"] = inst.spec.command
        if s.user:
            kwargs["user"] = s.user
        if s.read_only:
            # A read-only root still needs a scratch /tmp for most programs.
            kwargs["tmpfs"] = {"/tmp": "rw,noexec,nosuid,size=64m"}
        return kwargs

    def _create(self, ref: str, name: str, kwargs: dict[str, Any], inst: Instance) -> Any:
        """Create the container; a leftover of ours with the same name is removed once."""
        for attempt in (1, 2):
            try:
                return self.client.containers.create(ref, **kwargs)
            except docker.errors.ImageNotFound as exc:
                self._ready.discard(ref)  # removed behind our back: pull again next time
                raise StartFailed(f"image not found: {ref} ({_short(exc)})") from None
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and attempt == 1 and self._remove_stale(name):
                    continue
                self._error("create")
                raise StartFailed(
                    start_failure(_short(exc), image=ref, secrets=inst.secrets)
                ) from None
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _run(self, container: Any, ref: str, inst: Instance) -> None:
        """Start a created container; if the engine refuses, diagnose and remove it."""
        try:
            container.start()
            container.reload()
        except docker.errors.APIError as exc:
            self._error("start")
            diagnosis = start_failure(_short(exc), image=ref, secrets=inst.secrets)
            if "exec format error" in diagnosis:
                diagnosis = self._exec_format(container.attrs, ref) or diagnosis
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
            raise StartFailed(diagnosis) from None

    def _remove_stale(self, name: str) -> bool:
        """A container with our name exists: remove it if it is ours (left by a crash)."""
        try:
            c = self.client.containers.get(name)
        except docker.errors.DockerException:
            return False
        if (c.labels or {}).get(LABEL_AGENT) != self.agent_id:
            return False
        with contextlib.suppress(docker.errors.DockerException):
            c.remove(force=True)
        return True

    def stop(self, obs: Observed, timeout: float) -> None:
        try:
            c = self.client.containers.get(obs.handle)
        except docker.errors.NotFound:
            return
        except docker.errors.DockerException:
            self._error("inspect")
            raise
        try:
            # The engine sends SIGTERM, waits, then SIGKILL.
            c.stop(timeout=math.ceil(timeout))
        except docker.errors.NotFound:
            return
        except docker.errors.DockerException:
            self._error("stop")
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # removal already in progress
                self._error("remove")
                raise

    def kill(self, obs: Observed) -> None:
        with contextlib.suppress(docker.errors.DockerException):
            self.client.containers.get(obs.handle).kill()

    def collect(self, obs: Observed) -> str:
        try:
            c = self.client.containers.get(obs.handle)
        except docker.errors.NotFound:
            return f"exited {obs.exit_code}" if obs.exit_code is not None else "vanished"
        a = c.attrs
        st = a.get("State") or {}
        env = dict(e.split("=", 1) for e in (a.get("Config") or {}).get("Env") or [] if "=" in e)
        secrets = secrets_of(env)
        try:
            logs = c.logs(tail=20).decode("utf-8", "replace")
        except docker.errors.DockerException:
            logs = ""
        logs = (logs + "\n" + (st.get("Error") or "")).strip()
        mem = (a.get("HostConfig") or {}).get("Memory") or 0
        image_platform = None
        binary_platform = None
        if "exec format error" in logs.lower():
            ref = (a.get("Config") or {}).get("Image", "")
            try:
                image_platform = self._image_platform(self.client.images.get(a["Image"]).attrs)
            except docker.errors.DockerException:
                image_platform = None
            if image_platform is None or same_platform(image_platform, self.platform):
                # The image claims our platform but its program is not (a careless
                # cross-build): read the ELF header of the entrypoint to say which it is.
                binary_platform = self._binary_platform(c, a)
            log.debug("exec format error in %s (%s)", ref, image_platform)
        diagnosis = diagnose(
            exit_code=st.get("ExitCode", obs.exit_code),
            logs=logs,
            oom_killed=bool(st.get("OOMKilled")),
            memory_mb=mem // 2**20 if mem else None,
            node_platform=self.platform,
            image_platform=image_platform,
            binary_platform=binary_platform,
            secrets=secrets,
        )
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException:
            self._error("remove")
        return diagnosis

    def _exec_format(self, attrs: dict[str, Any], ref: str) -> str | None:
        try:
            plat = self._image_platform(self.client.images.get(ref).attrs)
        except docker.errors.DockerException:
            return None
        if not same_platform(plat, self.platform):
            return f"exec format error: the image is for {plat}, this node is {self.platform}"
        return None

    def _binary_platform(self, c: Any, attrs: dict[str, Any]) -> str | None:
        cfg = attrs.get("Config") or {}
        argv = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
        if not argv:
            return None
        prog = argv[0]
        candidates = (
            [prog]
            if prog.startswith("/")
            else [f"{d}/{prog}" for d in ("/usr/local/bin", "/usr/bin", "/bin")]
        )
        for path in candidates:
            try:
                stream, _ = c.get_archive(path)
                data = b"".join(stream)
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    member = tar.next()
                    if member is None or not member.isfile():
                        continue
                    f = tar.extractfile(member)
                    if f is not None:
                        return elf_platform(f.read(20))
            except (docker.errors.DockerException, tarfile.TarError):
                continue
        return None

    def info(self) -> tuple[int, int]:
        return self._cpus, self._mem_mb

    def _error(self, op: str) -> None:
        if self._on_error:
            self._on_error(op)

    def close(self) -> None:
        self._closed.set()
        if self._events is not None:
            with contextlib.suppress(Exception):
                self._events.close()
        with contextlib.suppress(Exception):
            self.client.close()
