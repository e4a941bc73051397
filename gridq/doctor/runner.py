"""Run the doctor's checks: server-side (the hub's GET /api/doctor, which knows the
tasks' real Redis URLs) and from a user's machine (``gridq doctor``), and sum them up.

Imports neither gridq.hub nor gridq.node: both the CLI and the hub use this module.
"""

from __future__ import annotations

import dataclasses
import difflib
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gridq.doctor import hub_checks, node_checks, redis_checks, task_checks
from gridq.doctor.checks import Check, fail, failed, ok, sort_key, warn
from gridq.doctor.task_checks import TaskInfo, redis_identity
from gridq.queue import Queue
from gridq.redisurl import client, mask

DEFAULT_WINDOW = 2.0

Identity = tuple[str, int, int]


# --- server side: what GET /api/doctor runs ---------------------------------------------


@dataclass
class _RedisTarget:
    url: str
    roles: list[str] = field(default_factory=list)

    def label(self) -> str:
        return f"Redis {mask(self.url)} ({', '.join(self.roles)})"


def _targets(hub_redis: str | None, tasks: list[TaskInfo]) -> dict[Identity, _RedisTarget]:
    out: dict[Identity, _RedisTarget] = {}

    def add(url: str, role: str) -> None:
        if not url:
            return
        t = out.setdefault(redis_identity(url), _RedisTarget(url))
        if role not in t.roles:
            t.roles.append(role)

    if hub_redis:
        add(hub_redis, "hub")
    for t in tasks:
        add(t.input_redis, f"task {t.name}")
        add(t.out_redis, f"task {t.name}")
    return out


def _parallel(fns: list[Callable[[], list[Check]]]) -> list[Check]:
    if not fns:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(fns))) as pool:
        return [c for res in pool.map(lambda f: f(), fns) for c in res]


def check_tasks(
    tasks: list[TaskInfo],
    urls: dict[Identity, str],
    nodes: list[dict[str, Any]] | None,
    window: float = DEFAULT_WINDOW,
    timeout: float = 2.0,
) -> list[Check]:
    """Task checks for the tasks whose input Redis is in ``urls`` (identity -> usable URL)."""
    conns: dict[Identity, Any] = {}

    def conn(url: str) -> Any | None:
        ident = redis_identity(url)
        if ident not in urls:
            return None
        if ident not in conns:
            conns[ident] = client(urls[ident], timeout=timeout, health_check_interval=0)
        return conns[ident]

    out: list[Check] = []
    firsts: dict[str, task_checks.Snapshot] = {}
    live: list[TaskInfo] = []
    try:
        for t in tasks:
            cin = conn(t.input_redis)
            if cin is None:
                out.append(
                    warn(
                        "task.queues",
                        "the task's queues could not be read (its Redis fails the checks above)",
                        "Fix the task's Redis URL first (see the Redis checks).",
                        f"task {t.name}",
                    )
                )
                if nodes is not None:
                    out.append(task_checks._instances(t, nodes, f"task {t.name}"))
                continue
            firsts[t.name] = task_checks.snapshot(t, cin, conn(t.out_redis))
            live.append(t)
        if live and window > 0:
            time.sleep(window)
        for t in live:
            cin = conn(t.input_redis)
            second = task_checks.snapshot(t, cin, conn(t.out_redis)) if window > 0 else None
            dead = Queue(cin, t.input_queue).dead_letters(100)
            out += task_checks.evaluate(t, firsts[t.name], second, nodes, dead)
    finally:
        for c in conns.values():
            c.close()
    return out


def unread_queues(
    tasks: list[TaskInfo], urls: dict[Identity, str], timeout: float = 2.0
) -> list[Check]:
    """queue.unread for each Redis in ``urls``, against the tasks that use it."""
    out: list[Check] = []
    for ident, url in urls.items():
        read = {t.input_queue for t in tasks if redis_identity(t.input_redis) == ident}
        written = {
            t.output_queue for t in tasks if t.output_queue and redis_identity(t.out_redis) == ident
        }
        c = client(url, timeout=timeout, health_check_interval=0)
        try:
            out += task_checks.check_unread_queues(c, read, written, f"Redis {mask(url)}")
        except Exception as exc:
            out.append(
                warn(
                    "queue.unread",
                    f"could not scan for queues: {exc}",
                    "Allow SCAN, TYPE and LLEN for this Redis user.",
                    f"Redis {mask(url)}",
                )
            )
        finally:
            c.close()
    return out


def run_server(
    hub_redis_url: str | None,
    tasks: list[TaskInfo],
    nodes: list[dict[str, Any]] | None = None,
    *,
    task: str | None = None,
    window: float = DEFAULT_WINDOW,
    timeout: float = 2.0,
) -> list[Check]:
    """Redis checks (the hub's and every task's) and task checks, with REAL URLs."""
    out: list[Check] = []
    if task is not None:
        tasks = [t for t in tasks if t.name == task]
        if not tasks:
            return [
                fail(
                    "task.exists",
                    f"no task named {task!r} is registered",
                    "Check the name with `gridq task list`, or register the task.",
                    f"task {task}",
                )
            ]
        hub_redis_url = None
    targets = _targets(hub_redis_url, tasks)
    good: dict[Identity, str] = {}

    def one(ident: Identity, tgt: _RedisTarget) -> Callable[[], list[Check]]:
        def run() -> list[Check]:
            res = redis_checks.check_redis(tgt.url, tgt.label(), timeout=timeout)
            if all(
                c.status != "fail"
                for c in res
                if c.name in ("redis.reachable", "redis.credentials")
            ):
                good[ident] = tgt.url
            return res

        return run

    out += _parallel([one(i, t) for i, t in targets.items()])
    out += check_tasks(tasks, good, nodes, window, timeout)
    if task is None:
        out += unread_queues(tasks, good, timeout)
    return out


# --- client side: gridq doctor ----------------------------------------------------------


@dataclass
class Options:
    hub_url: str | None = None
    token: str | None = None
    redis_urls: list[tuple[str, str]] = field(default_factory=list)  # (url, where it came from)
    task: str | None = None
    queue: str | None = None
    node: bool = False
    hub_bind: str | None = None
    window: float = DEFAULT_WINDOW
    probe_image: str | None = None
    timeout: float = 5.0


@dataclass
class _HubView:
    tasks: list[TaskInfo] = field(default_factory=list)
    nodes: list[dict[str, Any]] | None = None
    server: list[Check] | None = None


def _items(data: Any, key: str) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        data = data.get(key, [])
    return [d for d in data or [] if isinstance(d, dict)]


def _from_hub(http: Any, opts: Options) -> tuple[_HubView, list[Check]]:
    view = _HubView()
    out: list[Check] = []
    target = f"hub {opts.hub_url}"
    r = http.get("/api/tasks")
    if r.status_code == 200:
        view.tasks = [TaskInfo.from_dict(d) for d in _items(r.json(), "tasks")]
    r = http.get("/api/nodes")
    if r.status_code == 200:
        view.nodes = _items(r.json(), "nodes")
    params: dict[str, Any] = {"window": opts.window}
    if opts.task:
        params["task"] = opts.task
    r = http.get("/api/doctor", params=params, timeout=opts.timeout + opts.window + 30)
    if r.status_code == 200:
        from gridq.doctor.checks import from_dicts

        body = r.json()
        view.server = from_dicts(body.get("checks", []) if isinstance(body, dict) else body)
    elif r.status_code == 404 and "task" not in str(r.text).lower():
        out.append(
            warn(
                "hub.doctor",
                "this hub does not serve GET /api/doctor, so the tasks' Redis is checked only where this machine knows the URL",
                "Upgrade the hub to a gridq version with /api/doctor.",
                target,
            )
        )
    else:
        out.append(
            warn(
                "hub.doctor",
                f"GET /api/doctor answered {r.status_code}",
                "Read the hub's log for the error.",
                target,
            )
        )
    return view, out


def _local_task_checks(view: _HubView, opts: Options) -> list[Check]:
    """Without the hub's /api/doctor: check the tasks whose Redis this machine knows."""
    known = {redis_identity(u): u for u, _ in opts.redis_urls}
    tasks = view.tasks
    if opts.task:
        tasks = [t for t in tasks if t.name == opts.task]
        if not tasks:
            return [
                fail(
                    "task.exists",
                    f"no task named {opts.task!r} is registered",
                    "Check the name with `gridq task list`, or register the task.",
                    f"task {opts.task}",
                )
            ]
    usable = {
        i: u for i, u in known.items() if any(redis_identity(t.input_redis) == i for t in tasks)
    }
    out = check_tasks(
        [t for t in tasks if redis_identity(t.input_redis) in usable],
        usable,
        view.nodes,
        opts.window,
        opts.timeout,
    )
    if view.nodes is not None:
        for t in tasks:
            if redis_identity(t.input_redis) not in usable:
                out.append(task_checks._instances(t, view.nodes, f"task {t.name}"))
                if t.desired is not None:
                    out.append(task_checks._placement(t, f"task {t.name}", view.nodes))
    if not opts.task and usable:
        out += unread_queues(view.tasks, usable, opts.timeout)
    return out


def _queue_checks(
    name: str, view: _HubView | None, opts: Options, done: list[Check]
) -> list[Check]:
    """``done``: the checks already run; the queue's Redis is checked first if not there."""
    target = f"queue {name}"
    if not opts.redis_urls:
        return [
            fail(
                "queue.redis",
                "no Redis URL to look at the queue in",
                "Pass --redis-url or set GRIDQ_REDIS_URL.",
                target,
            )
        ]
    url, origin = opts.redis_urls[0]
    where = mask(url)
    pre: list[Check] = []
    if not any(c.name == "redis.reachable" and where in c.target for c in done):
        pre = redis_checks.check_redis(url, f"Redis {where} (from {origin})", full=False)
    if any(
        c.name in ("redis.reachable", "redis.credentials")
        and c.status == "fail"
        and where in c.target
        for c in done + pre
    ):
        # Reading the queue would only fail again, without the table.
        return [
            *pre,
            warn(
                "queue.read",
                f"queue {name!r} was not read: its Redis {where} fails the check above",
                "Fix the Redis first (see redis.reachable / redis.credentials), then run doctor again.",
                target,
            ),
        ]
    readers = [
        t
        for t in (view.tasks if view else [])
        if t.input_queue == name and redis_identity(t.input_redis) == redis_identity(url)
    ]
    info = readers[0] if readers else TaskInfo(name=name, input_redis=url, input_queue=name)
    info = dataclasses.replace(info, input_redis=url)
    out = check_tasks(
        [info], {redis_identity(url): url}, view.nodes if view else None, opts.window, opts.timeout
    )
    for c in out:
        c.target = target if not readers else c.target
    out = pre + out
    if view is not None and view.tasks and not readers:
        c = client(url, timeout=opts.timeout, health_check_interval=0)
        try:
            depth = task_checks.queue_depth(c, name)
        finally:
            c.close()
        if depth:
            close = [t.input_queue for t in view.tasks]
            m = difflib.get_close_matches(name, close, n=1, cutoff=0.6)
            out.append(
                fail(
                    "queue.unread",
                    f"{depth} jobs wait in queue {name!r} but no registered task reads it",
                    f"Push to a task's input_queue{f' (did you mean {m[0]!r}?)' if m else ''} or register a task that reads {name!r}.",
                    target,
                )
            )
    return out


def _local_hub_port(url: str) -> str | None:
    p = urlsplit(url)
    if p.hostname in ("127.0.0.1", "localhost", "::1", "0.0.0.0", socket.gethostname()):
        return f"{p.hostname}:{p.port or (443 if p.scheme == 'https' else 80)}"
    return None


def _node_checks(view: _HubView | None, opts: Options) -> list[Check]:
    cfg = node_checks.NodeConfig.from_env(opts.probe_image)
    me = cfg.hostname or socket.gethostname()
    mine = [n for n in view.nodes if n.get("hostname") == me] if view and view.nodes else []
    # The agent's own setting, else what the node registered here says it runs.
    runtime = cfg.runtime or next((str(n["runtime"]) for n in mine if n.get("runtime")), "docker")
    out: list[Check] = [node_checks.check_memory(cfg)]
    registered, tasks = _registered(view, opts, me, mine)
    out += registered
    if runtime == "process":
        return out + node_checks.skipped_for_process()
    engine, dock = node_checks.docker_engine()
    out.insert(0, engine)
    if dock is None:
        return out
    try:
        out.append(node_checks.check_disk(dock))
        out += node_checks.check_arch(dock, tasks)
        out += node_checks.check_network(dock, cfg, tasks)
    finally:
        dock.close()
    return out


def _registered(
    view: _HubView | None, opts: Options, me: str, mine: list[dict[str, Any]]
) -> tuple[list[Check], list[TaskInfo]]:
    """Is this machine a registered node, and which tasks to check for it."""
    tasks = view.tasks if view else []
    out: list[Check] = []
    if view is None:
        out.append(
            warn(
                "node.registered",
                "no hub to ask which tasks this node runs: image and network checks skipped",
                "Set GRIDQ_HUB_URL and GRIDQ_HUB_TOKEN (or --hub-url/--token) so doctor can check the assigned tasks.",
                node_checks.TARGET,
            )
        )
    elif view.nodes is not None and mine:
        assigned: set[str] = set()
        for n in mine:
            assigned |= set((n.get("assigned") or {}).keys())
        out.append(
            ok(
                "node.registered",
                f"registered as {', '.join(str(n.get('node_id')) for n in mine)} ({mine[0].get('status')}); {len(assigned)} tasks assigned",
                node_checks.TARGET,
            )
        )
        tasks = [t for t in tasks if t.name in assigned] or tasks
    elif view.nodes is not None:
        out.append(
            warn(
                "node.registered",
                f"no node named {me!r} is registered with the hub: checking every task",
                "Start the node agent here (gridq node) with GRIDQ_HUB_URL and GRIDQ_NODE_TOKEN set.",
                node_checks.TARGET,
            )
        )
    if opts.task:
        tasks = [t for t in tasks if t.name == opts.task]
    return out, tasks


def run_cli(opts: Options) -> list[Check]:
    """Everything ``gridq doctor`` checks from this machine."""
    out: list[Check] = []
    if opts.hub_bind:
        out.append(hub_checks.check_bind_port(opts.hub_bind))
    view: _HubView | None = None
    if opts.hub_url:
        hub, http = hub_checks.check_hub(opts.hub_url, opts.token, timeout=opts.timeout)
        out += hub
        health = next((c for c in hub if c.name == "hub.health"), None)
        if health is not None and health.status == "fail" and not opts.hub_bind:
            local = _local_hub_port(opts.hub_url)
            if local:
                holder = hub_checks.port_holder(int(local.rsplit(":", 1)[1]))
                if holder and not hub_checks._is_gridq_hub(holder):
                    out.append(
                        fail(
                            "hub.bind-port",
                            f"{local} is held by {holder}, not by the gridq hub",
                            "Stop that program or run the hub on another port and point GRIDQ_HUB_URL at it.",
                            f"hub bind {local}",
                        )
                    )
        if http is not None:
            try:
                view, extra = _from_hub(http, opts)
                out += extra
            finally:
                http.close()
    elif not opts.node and not opts.queue and not opts.redis_urls:
        out.append(
            fail(
                "hub.configured",
                "no hub URL: neither --hub-url, GRIDQ_HUB_URL nor a local stack",
                "Set GRIDQ_HUB_URL and GRIDQ_HUB_TOKEN, or start a local grid with `gridq up`.",
                "hub",
            )
        )
    server_checked: set[str] = set()
    if view is not None and view.server is not None:
        out += view.server
        server_checked = {c.target for c in view.server if c.name == "redis.version"}
    if not opts.task:
        for url, origin in opts.redis_urls:
            label = f"Redis {mask(url)} (from {origin})"
            full = not any(mask(url) in t for t in server_checked)
            out += redis_checks.check_redis(url, label, full=full, timeout=min(opts.timeout, 3.0))
    if view is not None and view.server is None and not opts.queue:
        out += _local_task_checks(view, opts)
    if opts.queue:
        out += _queue_checks(opts.queue, view, opts, out)
    if opts.node:
        out += _node_checks(view, opts)
    return sorted(out, key=sort_key)


def exit_code(results: list[Check]) -> int:
    return 1 if failed(results) else 0


def summary(results: list[Check] | list[dict[str, Any]]) -> str:
    """One line for `gridq status`: counts and the first failure (or warning)."""
    checks = [r if isinstance(r, Check) else Check.model_validate(r) for r in results]
    if not checks:
        return "doctor: no checks ran"
    n_fail = sum(c.status == "fail" for c in checks)
    n_warn = sum(c.status == "warn" for c in checks)
    if not n_fail and not n_warn:
        return f"doctor: all {len(checks)} checks ok"
    worst = sorted(checks, key=sort_key)[0]
    parts = [f"{n_fail} fail" if n_fail else "", f"{n_warn} warn" if n_warn else ""]
    head = ", ".join(p for p in parts if p)
    saw = worst.saw if len(worst.saw) <= 100 else worst.saw[:97] + "..."
    return f"doctor: {head} of {len(checks)} checks; {worst.label}: {saw} (run `gridq doctor`)"
