"""Workflows: signatures, ``chain``, ``group`` and ``chord`` (docs/workflows.md).

``task.s(*args, **kwargs)`` is a ``Signature``: task name, the queue (URL and name)
it goes to, arguments and options. ``.delay()`` on a workflow writes its barriers
(gridq/wfstate.py) and the waiting record of its final job, then enqueues the jobs
that can start now, and returns a ``JobHandle`` for the final result.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from gridq import jobs, protocol, wfstate
from gridq.failure import Failure, revive
from gridq.jobs import JobHandle
from gridq.queue import Queue

__all__ = ["Failure", "Signature", "chain", "chord", "group"]

_OPTIONS = frozenset({"queue", "priority", "retries", "timeout", "result_ttl"})


@cache
def _queue(url: str, name: str) -> Queue:
    # One client per (URL, queue) in this process, however many signatures use it.
    return Queue.from_url(url, name)


@dataclass(frozen=True)
class Signature:
    """One task call to make later: ``add.s(1, 2)``; ``.set(queue=..., priority=...)``."""

    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    url: str = field(default="", repr=False)  # may hold a password: never printed
    queue: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def set(self, **options: Any) -> Signature:
        """A copy with other options: queue (same Redis), priority, retries, timeout,
        result_ttl."""
        bad = sorted(set(options) - _OPTIONS)
        if bad:
            raise TypeError(f"unknown signature option(s) {', '.join(bad)}")
        queue = options.pop("queue", self.queue)
        return replace(self, queue=queue, options={**self.options, **options})

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "url": self.url,
            "queue": self.queue,
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signature:
        return cls(
            d["task"], tuple(d.get("args", ())), dict(d.get("kwargs", {})), d["url"], d["queue"],
            dict(d.get("options", {})),
        )  # fmt: skip

    def _q(self) -> Queue:
        return _queue(self.url, self.queue)

    def delay(self) -> JobHandle:
        """Enqueue this one call, like ``task.delay``."""
        o = self.options
        return self._q().enqueue(
            self.task,
            *self.args,
            _priority=o.get("priority") or 0,
            _retries=o.get("retries"),
            _timeout=o.get("timeout"),
            _result_ttl=o.get("result_ttl"),
            **self.kwargs,
        )

    def _ttl(self) -> int:
        ttl = self.options.get("result_ttl")
        # Members always keep a record: their result travels through it.
        return max(1, int(ttl if ttl is not None else jobs.default_result_ttl()))

    def _envelope(
        self, job_id: str, ttl: int, wf: dict[str, Any] | None, first: tuple[Any, ...] = ()
    ) -> bytes:
        o = self.options
        return protocol.encode(
            self.task,
            [*first, *self.args],
            self.kwargs,
            job_id=job_id,
            result_ttl=ttl,
            retries=o.get("retries"),
            timeout=o.get("timeout"),
            priority=o.get("priority") or 0,
            wf=wf,
        )


def _sigs(items: Iterable[Any], what: str) -> list[Signature]:
    out = list(items)
    for s in out:
        if not isinstance(s, Signature):
            raise TypeError(
                f"{what} members must be signatures (task.s(...)), not {type(s).__name__}: "
                "gridq does not nest workflows (docs/workflows.md)"
            )
    return out


def _same_redis(sigs: list[Signature]) -> None:
    urls = {s.url for s in sigs}
    if len(urls) > 1:
        raise ValueError("every member of a workflow must use the same Redis URL")


def _write_record(q: Queue, job_id: str, task: str, ttl: int, pipe: Any) -> None:
    k = q.keys.job(job_id)
    pipe.hset(
        k,
        mapping={
            "status": wfstate.WAITING,
            "task": task,
            "enqueued_at": repr(time.time()),
            "attempts": 0,
            "ttl": ttl,
        },
    )
    pipe.expire(k, ttl)


def _push(q: Queue, sig: Signature, job_id: str, ttl: int, envelope: bytes, pipe: Any) -> None:
    k = q.keys.job(job_id)
    pipe.hset(
        k,
        mapping={
            "status": jobs.QUEUED,
            "task": sig.task,
            "enqueued_at": repr(time.time()),
            "attempts": 0,
            "ttl": ttl,
        },
    )
    pipe.expire(k, ttl)
    prio = sig.options.get("priority") or 0
    pipe.lpush(q.keys.priority(prio) if prio else q.keys.pending, envelope)


def _barrier(q: Queue, stage: str, fields: dict[str, Any], ttl: int, pipe: Any) -> None:
    pipe.hset(q.keys.wf(stage), mapping=fields)
    pipe.expire(q.keys.wf(stage), ttl)


def _prio(sig: Signature) -> dict[str, Any]:
    p = sig.options.get("priority") or 0
    return {"p": p} if p else {}


class chain:  # noqa: N801  (Celery's spelling)
    """``chain(a.s(1), b.s(), c.s())``: each step's result is the next one's first
    argument. A step that goes dead ends the chain: the final handle raises JobFailed."""

    def __init__(self, *steps: Signature) -> None:
        self.steps = _sigs(steps, "chain")
        if not self.steps:
            raise ValueError("chain() needs at least one step")
        _same_redis(self.steps)

    def delay(self) -> JobHandle:
        wf_id = protocol.new_id()
        steps = self.steps
        last = len(steps) - 1
        ttl = max(s._ttl() for s in steps)
        final_q = steps[last]._q()
        final_id = f"{wf_id}.{last}"
        conn = steps[0]._q().conn
        pipe = conn.pipeline(transaction=False)
        # Everything that waits is written before the first step can run.
        for k in range(1, last + 1):
            s = steps[k]
            q = s._q()
            job_id = f"{wf_id}.{k}"
            wf = self._meta(wf_id, k, final_q.name, final_id)
            env = s._envelope(job_id, ttl, wf, (wfstate.placeholder(),))
            parts = wfstate.split_envelope(env)
            _barrier(q, f"{wf_id}.{k}", wfstate.barrier_fields(1, wfstate.CHAIN, ttl, parts), ttl, pipe)  # fmt: skip
            _write_record(q, job_id, s.task, ttl, pipe)
        pipe.execute()
        first = steps[0]
        env = first._envelope(f"{wf_id}.0", ttl, self._meta(wf_id, 0, final_q.name, final_id))
        pipe = conn.pipeline(transaction=False)
        _push(first._q(), first, f"{wf_id}.0", ttl, env, pipe)
        pipe.execute()
        return final_q.job(final_id)

    def _meta(self, wf_id: str, k: int, final_q: str, final_id: str) -> dict[str, Any] | None:
        if k == len(self.steps) - 1:
            return None  # the last step's own record is the chain's result
        nxt = self.steps[k + 1]
        return {
            "q": nxt.queue,
            "s": f"{wf_id}.{k + 1}",
            "i": 0,
            "x": f"{wf_id}.{k + 1}",
            "k": wfstate.CHAIN,
            "f": [final_q, final_id],
            **_prio(nxt),
        }


class group:  # noqa: N801
    """``group(add.s(i, i) for i in range(100))``: run in parallel; ``.delay().get()``
    returns the results in order (a Failure in the place of a member that went dead)."""

    def __init__(self, *members: Signature | Iterable[Signature]) -> None:
        flat: list[Any] = []
        for m in members:
            if isinstance(m, Signature):
                flat.append(m)
            else:
                flat.extend(m)
        self.members = _sigs(flat, "group")
        _same_redis(self.members)

    def delay(self) -> GroupHandle:
        if not self.members:
            raise ValueError("group() needs at least one member")
        wf_id = protocol.new_id()
        home = self.members[0]
        q = home._q()
        ttl = max(s._ttl() for s in self.members)
        pipe = q.conn.pipeline(transaction=False)
        fields = wfstate.barrier_fields(len(self.members), wfstate.GROUP, ttl, None)
        _barrier(q, wf_id, fields, ttl, pipe)
        _write_record(q, wf_id, "group", ttl, pipe)
        pipe.execute()  # the barrier exists before any member can report to it
        pipe = q.conn.pipeline(transaction=False)
        _members(self.members, wf_id, home.queue, wf_id, wfstate.GROUP, ttl, {}, pipe)
        pipe.execute()
        return GroupHandle(q, wf_id)


def _members(
    members: list[Signature],
    wf_id: str,
    queue: str,
    nxt: str,
    kind: str,
    ttl: int,
    extra: dict[str, Any],
    pipe: Any,
) -> None:
    for i, s in enumerate(members):
        job_id = f"{wf_id}.{i}"
        wf = {"q": queue, "s": wf_id, "i": i, "x": nxt, "k": kind, **extra}
        _push(s._q(), s, job_id, ttl, s._envelope(job_id, ttl, wf), pipe)


class chord:  # noqa: N801
    """``chord(group(...), summarize.s())``: the callback runs once, after every member
    finished, with the list of results (``Failure`` where a member went dead)."""

    def __init__(self, header: group | Iterable[Signature], body: Signature) -> None:
        self.members = header.members if isinstance(header, group) else _sigs(header, "chord")
        if not isinstance(body, Signature):
            raise TypeError("chord(header, body): body must be a signature (task.s(...))")
        self.body = body
        _same_redis([*self.members, body])

    def delay(self) -> JobHandle:
        wf_id = protocol.new_id()
        body = self.body
        q = body._q()
        ttl = max(s._ttl() for s in [*self.members, body])
        cb_id = f"{wf_id}.cb"
        pipe = q.conn.pipeline(transaction=False)
        cb_wf = {"c": 1}  # the worker revives Failure markers in the first argument
        if not self.members:
            _push(q, body, cb_id, ttl, body._envelope(cb_id, ttl, cb_wf, ([],)), pipe)
            pipe.execute()
            return q.job(cb_id)
        env = body._envelope(cb_id, ttl, cb_wf, (wfstate.placeholder(),))
        fields = wfstate.barrier_fields(
            len(self.members), wfstate.CHORD, ttl, wfstate.split_envelope(env)
        )
        _barrier(q, wf_id, fields, ttl, pipe)
        _write_record(q, cb_id, body.task, ttl, pipe)
        pipe.execute()  # the barrier exists before any member can report to it
        pipe = q.conn.pipeline(transaction=False)
        _members(self.members, wf_id, body.queue, cb_id, wfstate.CHORD, ttl, _prio(body), pipe)
        pipe.execute()
        return q.job(cb_id)


class GroupHandle(JobHandle):
    """A group's handle: ``get()`` returns the ordered results, ``Failure`` objects in
    the places of members that went dead or were cancelled."""

    __slots__ = ()

    def get(self, timeout: float | None = None) -> Any:
        return revive(super().get(timeout))

    def __reduce__(self) -> tuple[Any, ...]:
        _, (url, queue, job_id) = super().__reduce__()
        return (_restore_group, (url, queue, job_id))


def _restore_group(url: str, queue: str, job_id: str) -> GroupHandle:
    return GroupHandle(_queue(url, queue), job_id)
