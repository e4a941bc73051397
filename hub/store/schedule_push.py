"""Push a schedule's job to its task's input queue, at most once per job id.

The task's Redis may not be the hub's, so claiming a tick (hub Redis) and pushing its
job (task Redis) cannot be one script. Instead the push is idempotent: one script on
the task's Redis sets the marker ``gridq:q:{<queue>}:sched:<job id>`` (SET NX, TTL one day)
and LPUSHes the job only if the marker was new. A claim replayed after a crash — or
pushed by a stale leader at the same moment as the new one — pushes nothing twice.
"""

from __future__ import annotations

import anyio.to_thread
import redis

from gridq import protocol
from gridq.keys import QueueKeys
from gridq.redisurl import client as redis_client
from gridq.signing import Signer

from ..models import TaskSpec
from ..models_schedules import Payload

MARKER_TTL = 86_400  # seconds a pushed job id is remembered (a claim replays within seconds)

# KEYS: marker, queue list. ARGV: item, marker TTL. Returns 1 if pushed, 0 if it was already.
PUSH_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


def item_of(payload: Payload, job_id: str) -> bytes:
    """A raw ``item`` goes as is; a ``job`` becomes an envelope whose id is the job id."""
    if payload.job is None:
        assert payload.item is not None
        return payload.item.encode()
    j = payload.job
    return protocol.encode(j.task, j.args, j.kwargs, job_id=job_id)


class Pusher:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        # Sync clients to the tasks' own Redis servers; a cache of connections, not state.
        self._clients: dict[str, redis.Redis] = {}
        self.signer = Signer.from_env()  # GRIDQ_SIGNING_KEY: scheduled envelopes are signed

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()

    def _client(self, url: str) -> redis.Redis:
        conn = self._clients.get(url)
        if conn is None:
            conn = redis_client(url, timeout=self.timeout, health_check_interval=0)
            self._clients[url] = conn
        return conn

    def _push(self, task: TaskSpec, job_id: str, item: bytes) -> bool:
        q = QueueKeys(task.input_queue)
        script = self._client(task.input_redis).register_script(PUSH_ONCE)
        return bool(script(keys=[q.scheduled(job_id), q.pending], args=[item, MARKER_TTL]))

    async def push(self, task: TaskSpec, payload: Payload, job_id: str) -> bool:
        """True if pushed now, False if this job id was pushed before. Raises RedisError."""
        item = self.signer.sign(item_of(payload, job_id))
        return await anyio.to_thread.run_sync(self._push, task, job_id, item)
