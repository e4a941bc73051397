"""The wire format: job envelopes, raw items, result objects and dead-letter records.

A job is a Redis list item. If it is a JSON object with the key ``"gridq"`` it is an
*envelope* (format version 1, see docs/protocol.md); anything else is a *raw item*
handed to the default handler byte for byte. An item that claims to be an envelope
but breaks the format is *malformed*: decode() raises MalformedJob and the worker
dead-letters it with the reason.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1
ENVELOPE_MARK = "gridq"
MAX_PRIORITY = 9


class MalformedJob(ValueError):
    """The item claims to be a gridq envelope but breaks the format."""


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True)
class Job:
    """A decoded job. ``raw`` is set for raw items (and retried raw items)."""

    id: str
    task: str | None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0
    enqueued_at: float | None = None
    raw: bytes | None = None
    retries: int | None = None
    timeout: float | None = None
    priority: int = 0
    # Seconds the job's record lives after it finished (gridq/jobs.py); None: the job
    # keeps no record (raw items, producers that write envelopes themselves).
    result_ttl: int | None = None
    key: str | None = None  # unique key (enqueue(key=...)), released when it finishes
    unique_for: float | None = None  # ... that long after it finished
    wf: dict[str, Any] | None = None  # workflow membership (gridq/wfstate.py), else None
    # The exact bytes as they sit in the queue: what acknowledging removes.
    item: bytes = b""
    # The producer's signature (gridq.signing); kept across retries, which leave it valid.
    sig: str | None = None

    @property
    def is_raw(self) -> bool:
        return self.raw is not None


def encode(
    task: str,
    args: list[Any] | tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    job_id: str | None = None,
    attempt: int = 0,
    retries: int | None = None,
    timeout: float | None = None,
    priority: int = 0,
    enqueued_at: float | None = None,
    result_ttl: int | None = None,
    key: str | None = None,
    unique_for: float | None = None,
    wf: dict[str, Any] | None = None,
) -> bytes:
    """Build an envelope. Raises TypeError if the arguments are not JSON-serialisable.

    ``ttl`` comes right after ``id``: the worker's Lua scripts recognise a job that
    keeps a record by that prefix (``{"gridq":1,"id":"...","ttl":``) without decoding."""
    body: dict[str, Any] = {ENVELOPE_MARK: FORMAT_VERSION, "id": job_id or new_id()}
    if result_ttl is not None:
        body["ttl"] = result_ttl
    body.update(
        {
            "task": task,
            "args": list(args),
            "kwargs": kwargs or {},
            "attempt": attempt,
            "enqueued_at": time.time() if enqueued_at is None else enqueued_at,
        }
    )
    if retries is not None:
        body["retries"] = retries
    if key is not None:
        body["key"] = key
    if unique_for is not None:
        body["unique_for"] = unique_for
    if timeout is not None:
        body["timeout"] = timeout
    if priority:
        body["priority"] = priority
    if wf is not None:
        body["wf"] = wf
    return json.dumps(body, separators=(",", ":")).encode()


def encode_raw_retry(raw: bytes, job_id: str, attempt: int) -> bytes:
    """A raw item that failed and waits for its next attempt keeps its bytes (base64)."""
    body = {
        ENVELOPE_MARK: FORMAT_VERSION,
        "id": job_id,
        "raw": base64.b64encode(raw).decode(),
        "attempt": attempt,
        "enqueued_at": time.time(),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _looks_like_envelope(item: bytes) -> bool:
    # Cheap pre-check so raw items (the common IDM-GridCore case) skip json.loads.
    return item[:1] == b"{" and b'"gridq"' in item[:4096]


def decode(item: bytes) -> Job:
    """Turn a queue item into a Job; raise MalformedJob with the reason if it is broken."""
    if not _looks_like_envelope(item):
        return Job(id=new_id(), task=None, raw=item, item=item)
    try:
        body = json.loads(item)
    except (ValueError, UnicodeDecodeError):
        # Starts like an envelope but is no JSON: a raw item that happens to contain
        # the word. Hand it over as is rather than second-guess the producer.
        return Job(id=new_id(), task=None, raw=item, item=item)
    if not isinstance(body, dict) or ENVELOPE_MARK not in body:
        return Job(id=new_id(), task=None, raw=item, item=item)
    version = body.get(ENVELOPE_MARK)
    # An integer, as docs/protocol.md says: JSON true and 1.0 compare equal to 1 in
    # Python but are not the version a producer in another language means.
    if type(version) is not int or version != FORMAT_VERSION:
        raise MalformedJob(
            f"unsupported envelope version {version!r} (this worker speaks {FORMAT_VERSION})"
        )
    job_id = body.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise MalformedJob("envelope field 'id' must be a non-empty string")
    attempt = body.get("attempt", 0)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
        raise MalformedJob("envelope field 'attempt' must be a non-negative integer")
    enqueued_at = body.get("enqueued_at")
    if enqueued_at is not None and (
        not isinstance(enqueued_at, int | float) or isinstance(enqueued_at, bool)
    ):
        raise MalformedJob("envelope field 'enqueued_at' must be a number")
    retries = body.get("retries")
    if retries is not None and (
        not isinstance(retries, int) or isinstance(retries, bool) or retries < 0
    ):
        raise MalformedJob("envelope field 'retries' must be a non-negative integer")
    timeout = body.get("timeout")
    if timeout is not None and (
        not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0
    ):
        raise MalformedJob("envelope field 'timeout' must be a positive number")
    priority = body.get("priority", 0)
    if (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not 0 <= priority <= MAX_PRIORITY
    ):
        raise MalformedJob(f"envelope field 'priority' must be an integer 0..{MAX_PRIORITY}")
    result_ttl = body.get("ttl")
    if result_ttl is not None and (
        not isinstance(result_ttl, int) or isinstance(result_ttl, bool) or result_ttl <= 0
    ):
        raise MalformedJob("envelope field 'ttl' must be a positive integer")
    key = body.get("key")
    if key is not None and not isinstance(key, str):
        raise MalformedJob("envelope field 'key' must be a string")
    unique_for = body.get("unique_for")
    if unique_for is not None and (
        not isinstance(unique_for, int | float) or isinstance(unique_for, bool) or unique_for < 0
    ):
        raise MalformedJob("envelope field 'unique_for' must be a number >= 0")
    wf = body.get("wf")
    if wf is not None and not isinstance(wf, dict):
        raise MalformedJob("envelope field 'wf' must be an object")
    if "raw" in body:
        raw = body["raw"]
        if not isinstance(raw, str):
            raise MalformedJob("envelope field 'raw' must be a base64 string")
        try:
            data = base64.b64decode(raw, validate=True)
        except ValueError as exc:
            raise MalformedJob(f"envelope field 'raw' is not valid base64: {exc}") from None
        return Job(
            id=job_id, task=None, raw=data, attempt=attempt, enqueued_at=enqueued_at, item=item
        )
    task = body.get("task")
    if task is not None and (not isinstance(task, str) or not task):
        raise MalformedJob("envelope field 'task' must be a non-empty string or absent")
    args = body.get("args", [])
    if not isinstance(args, list):
        raise MalformedJob("envelope field 'args' must be a list")
    kwargs = body.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise MalformedJob("envelope field 'kwargs' must be an object")
    return Job(
        id=job_id,
        task=task,
        args=args,
        kwargs=kwargs,
        attempt=attempt,
        enqueued_at=enqueued_at,
        retries=retries,
        timeout=timeout,
        priority=priority,
        result_ttl=result_ttl,
        key=key,
        unique_for=unique_for,
        wf=wf,
        item=item,
        sig=sig if isinstance(sig := body.get("sig"), str) else None,
    )


def with_attempt(job: Job, attempt: int) -> bytes:
    """The job re-encoded for its next attempt (same id)."""
    if job.raw is not None:
        return encode_raw_retry(job.raw, job.id, attempt)
    if job.sig is not None:
        # A signed envelope keeps every field exactly as its producer wrote it (only the
        # unsigned attempt changes): re-encoding from the decoded fields would add
        # defaults and so break the signature.
        body = json.loads(job.item)
        body["attempt"] = attempt
        return json.dumps(body, separators=(",", ":")).encode()
    return encode(
        job.task or "",
        job.args,
        job.kwargs,
        job_id=job.id,
        attempt=attempt,
        retries=job.retries,
        timeout=job.timeout,
        priority=job.priority,
        enqueued_at=job.enqueued_at,
        result_ttl=job.result_ttl,
        key=job.key,
        unique_for=job.unique_for,
        wf=job.wf,
    )


def result_object(job: Job, status: str, *, result: Any = None, error: str | None = None) -> bytes:
    """The JSON object written to the output queue for an envelope job."""
    body: dict[str, Any] = {
        "id": job.id,
        "task": job.task,
        "status": status,
        "attempts": job.attempt + 1,
    }
    if status == "ok":
        body["result"] = result
    else:
        body["error"] = error
    body["finished_at"] = time.time()
    return json.dumps(body, separators=(",", ":"), default=str).encode()


def raw_result(value: Any) -> bytes | None:
    """A raw job's return value as it goes to the output queue; None writes nothing."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def item_text(item: bytes) -> dict[str, str]:
    """How a queue item is kept in a dead-letter record: text when it is UTF-8, else base64."""
    try:
        return {"item": item.decode()}
    except UnicodeDecodeError:
        return {"item_b64": base64.b64encode(item).decode()}


def item_from_record(record: dict[str, Any]) -> bytes:
    if "item_b64" in record:
        return base64.b64decode(record["item_b64"])
    return str(record.get("item", "")).encode()


def dead_record(
    item: bytes,
    *,
    job_id: str | None,
    task: str | None,
    reason: str,
    error_type: str,
    message: str,
    traceback: str | None = None,
    attempts: int = 0,
) -> bytes:
    """A dead-letter record: the original item plus why it died."""
    body: dict[str, Any] = {
        "id": job_id,
        "task": task,
        "reason": reason,
        "error_type": error_type,
        "error": message,
        "traceback": traceback,
        "attempts": attempts,
        "failed_at": time.time(),
    }
    body.update(item_text(item))
    return json.dumps(body, separators=(",", ":"), default=str).encode()
