"""The jobs routes' one door into the hub store and the tasks' own Redis servers.

Kept apart so the store can be re-pointed in one place: the routes ask for a task's
spec here, and get a producer ``Queue`` on the task's input Redis (sync clients,
cached per URL, used from a worker thread).
"""

from __future__ import annotations

import threading

import redis

from gridq.queue import Queue
from gridq.redisurl import client

from ..models import TaskSpec
from ..store import Store
from .tasks import task_record


async def task_spec(store: Store, name: str) -> TaskSpec:
    return (await task_record(store, name)).spec


class TaskQueues:
    """Producer queues on the tasks' input Redis servers (a cache of connections)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._clients: dict[str, redis.Redis] = {}
        self._lock = threading.Lock()

    def queue(self, spec: TaskSpec) -> Queue:
        url = spec.input_redis
        with self._lock:
            conn = self._clients.get(url)
            if conn is None:
                conn = client(url, timeout=self.timeout, health_check_interval=0)
                self._clients[url] = conn
        return Queue(conn, spec.input_queue, url=url)
