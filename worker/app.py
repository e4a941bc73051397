"""The SDK: ``App``, ``@app.task`` and ``@app.default``.

``App()`` with no arguments reads its queues from the environment, but only when it
needs them (the worker starts, or the first ``.delay()``): importing a module that
defines an App never touches the environment or Redis.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from gridq import contract as c
from gridq import protocol
from gridq.worker.signature_check import verifier_for

if TYPE_CHECKING:
    from gridq.canvas import Signature
    from gridq.jobs import JobHandle
    from gridq.queue import Queue
    from gridq.signing import Verifier
    from gridq.worker.settings import WorkerSettings

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_TASK = "__default__"

# Options a task accepts. Anything else is a typo the user wants to hear about at
# import time, not when the first job fails.
TASK_OPTIONS = frozenset(
    {
        "name",
        "retries",
        "backoff",
        "max_backoff",
        "timeout",
        "priority",
        "result_ttl",
        "unique_for",
        "rate_limit",
        "concurrency_limit",
    }
)


@dataclass(frozen=True, slots=True)
class TaskOptions:
    retries: int | None = None  # None: the worker default (3)
    backoff: float | None = None  # base delay in seconds (default 1.0)
    max_backoff: float | None = None  # cap in seconds (default 300)
    timeout: float | None = None  # seconds; None: no limit
    priority: int = 0  # default priority for .delay(); higher runs first
    result_ttl: int | None = None  # seconds the job record lives; None: GRIDQ_RESULT_TTL
    unique_for: float | None = None  # enqueue(key=...) stays unique this long after the end
    rate_limit: str | None = None  # "100/s", "10/m", "5/h": starts per period, grid-wide
    concurrency_limit: int | None = None  # at most this many running at once, grid-wide

    @property
    def rate_interval(self) -> float:
        """Seconds between two starts under ``rate_limit`` (0: no rate limit)."""
        return rate_interval(self.rate_limit) if self.rate_limit else 0.0


_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def rate_interval(spec: str) -> float:
    """``"100/s"`` -> 0.01: seconds between starts. ValueError for anything else."""
    count, sep, unit = spec.partition("/")
    try:
        n = float(count)
    except ValueError:
        n = 0.0
    if not sep or unit not in _PERIODS or n <= 0:
        raise ValueError(f"rate_limit {spec!r}: write N/s, N/m or N/h with N > 0")
    return _PERIODS[unit] / n


def _check_options(where: str, options: dict[str, Any]) -> TaskOptions:
    unknown = sorted(set(options) - TASK_OPTIONS)
    if unknown:
        raise TypeError(
            f"{where}: unknown task option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(TASK_OPTIONS))}"
        )
    opts = {k: v for k, v in options.items() if k != "name"}
    retries = opts.get("retries")
    if retries is not None and (not isinstance(retries, int) or retries < 0):
        raise TypeError(f"{where}: retries must be an integer >= 0")
    for key in ("backoff", "max_backoff", "timeout"):
        v = opts.get(key)
        if v is not None and (not isinstance(v, int | float) or v <= 0):
            raise TypeError(f"{where}: {key} must be a positive number of seconds")
    for key in ("result_ttl", "unique_for"):
        v = opts.get(key)
        if v is not None and (not isinstance(v, int | float) or isinstance(v, bool) or v < 0):
            raise TypeError(f"{where}: {key} must be a number of seconds >= 0")
    if opts.get("result_ttl") is not None:
        opts["result_ttl"] = int(opts["result_ttl"])
    rate = opts.get("rate_limit")
    if rate is not None:
        if not isinstance(rate, str):
            raise TypeError(f"{where}: rate_limit must be a string like '100/s'")
        try:
            rate_interval(rate)
        except ValueError as exc:
            raise TypeError(f"{where}: {exc}") from None
    conc = opts.get("concurrency_limit")
    if conc is not None and (not isinstance(conc, int) or isinstance(conc, bool) or conc < 1):
        raise TypeError(f"{where}: concurrency_limit must be an integer >= 1")
    prio = opts.get("priority", 0)
    if not isinstance(prio, int) or not 0 <= prio <= protocol.MAX_PRIORITY:
        raise TypeError(f"{where}: priority must be an integer 0..{protocol.MAX_PRIORITY}")
    return TaskOptions(**opts)


class Task(Generic[P, R]):
    """A registered handler. Calling it runs it here; ``.delay()`` enqueues it."""

    def __init__(
        self, app: App, name: str, fn: Callable[P, R], options: TaskOptions, *, raw: bool = False
    ) -> None:
        self.app = app
        self.name = name
        self.fn = fn
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        # The default handler receives raw items as bytes.
        self.raw = raw
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<gridq task {self.name}>"

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature for workflows (gridq.chain / group / chord, docs/workflows.md)."""
        from gridq.canvas import Signature

        q, o = self.app.queue(), self.options
        opts = {"priority": o.priority, "result_ttl": o.result_ttl}
        return Signature(self.name, args, kwargs, q.url or "", q.name, opts)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        """Enqueue with the task's defaults; returns the JobHandle."""
        return self.enqueue(args, kwargs)

    def enqueue(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        delay: float | None = None,
        eta: datetime | None = None,
        key: str | None = None,
        unique_for: float | None = None,
        result_ttl: int | None = None,
        retries: int | None = None,
        timeout: float | None = None,
        job_id: str | None = None,
    ) -> JobHandle:
        """Enqueue with per-job options; returns the JobHandle. ``priority`` 1..9 runs
        before 0 (higher first); ``delay`` (seconds) or ``eta`` (aware datetime); ``key``
        makes it unique in the queue (the existing job's handle comes back)."""
        if self.raw:
            raise TypeError("the default handler takes raw items: use app.queue().push_raw()")
        o = self.options
        return self.app.queue().enqueue(
            self.name,
            *args,
            _priority=o.priority if priority is None else priority,
            _delay=delay,
            _eta=eta,
            _key=key,
            _unique_for=o.unique_for if unique_for is None else unique_for,
            _result_ttl=o.result_ttl if result_ttl is None else result_ttl,
            _retries=retries,
            _timeout=timeout,
            _job_id=job_id,
            **(kwargs or {}),
        )


class App:
    """A set of handlers and the queues they serve.

    ``App(input_url=..., input_queue=..., output_url=..., output_queue=...)``; any
    argument left out comes from the worker settings (environment / TOML) when first
    needed.
    """

    def __init__(
        self,
        input_url: str | None = None,
        input_queue: str | None = None,
        output_url: str | None = None,
        output_queue: str | None = None,
    ) -> None:
        self.input_url = input_url
        self.input_queue = input_queue
        self.output_url = output_url
        self.output_queue = output_queue
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.default_handler: Task[Any, Any] | None = None
        # "module:attr" the worker loaded this app from (the processes pool re-imports it).
        self.import_path: str | None = None
        self._queue: Queue | None = None
        # The worker's signature policy (set by configure()); None: nothing is checked.
        self.verifier: Verifier | None = None

    # --- registration -----------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self, fn: None = None, /, **options: Any
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """``@app.task`` or ``@app.task(retries=5, backoff=2.0, timeout=30, name=..., priority=...)``."""
        if fn is not None and not callable(fn):
            raise TypeError("@app.task takes keyword options only: @app.task(retries=5)")

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            name = options.get("name") or f.__name__
            opts = _check_options(f"@app.task on {f.__qualname__}", options)
            if name in self.tasks or name == DEFAULT_TASK:
                raise ValueError(f"task name {name!r} is registered twice")
            t: Task[Any, Any] = Task(self, name, f, opts)
            self.tasks[name] = t
            return t

        return register(fn) if fn is not None else register

    def default(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """The handler for raw items (gets the bytes) and for envelopes that name no task."""
        if fn is not None and not callable(fn):
            raise TypeError("@app.default takes keyword options only: @app.default(timeout=5)")
        if "name" in options:
            raise TypeError("@app.default: the default handler has no name option")

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            opts = _check_options(f"@app.default on {f.__qualname__}", options)
            if self.default_handler is not None:
                raise ValueError("@app.default is registered twice")
            t: Task[Any, Any] = Task(self, DEFAULT_TASK, f, opts, raw=True)
            self.default_handler = t
            return t

        return register(fn) if fn is not None else register

    def handler_for(self, job: protocol.Job) -> Task[Any, Any] | None:
        if job.task is None:
            return self.default_handler
        return self.tasks.get(job.task)

    # --- configuration ----------------------------------------------------------------

    def configure(self, settings: WorkerSettings) -> None:
        """Fill what the constructor left open from settings (called by the worker)."""
        if self.input_url is None:
            self.input_url = settings.input_url
        if self.input_queue is None:
            self.input_queue = settings.input_queue or None
        if self.output_url is None:
            self.output_url = settings.output_url or self.input_url
        if self.output_queue is None:
            self.output_queue = settings.output_queue or None
        self.verifier = verifier_for(settings)

    def queue(self) -> Queue:
        """The producer side of the input queue (settings read on first use)."""
        if self._queue is None:
            from gridq.errors import ConfigError
            from gridq.queue import Queue
            from gridq.worker.settings import load_worker_settings

            if self.input_url is None or self.input_queue is None:
                self.configure(load_worker_settings())
            if not self.input_url or not self.input_queue:
                raise ConfigError(
                    "no input queue: pass App(input_url=..., input_queue=...) "
                    f"or set {c.ENV_INPUT_REDIS_URL} and {c.ENV_INPUT_QUEUE}"
                )
            self._queue = Queue.from_url(self.input_url, self.input_queue)
        return self._queue


def load_app(spec: str) -> App:
    """Import ``module:attr`` (``attr`` defaults to ``app``) and return the App."""
    import importlib

    from gridq.errors import ConfigError

    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}")
    if callable(obj) and not isinstance(obj, App):
        obj = obj()  # a factory
    if not isinstance(obj, App):
        raise ConfigError(f"{spec} is a {type(obj).__name__}, not a gridq App")
    obj.import_path = f"{module_name}:{attr}"
    return obj
