"""``redis+sentinel://`` URLs: the client finds the master through a real sentinel, and
a worker runs jobs through it. (Failover is tested elsewhere, with three sentinels.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gridq.ports import free_port
from gridq.queue import Queue
from gridq.redisurl import client, mask
from gridq.worker import App
from tests.support import RedisServer, need
from tests.worker.conftest import Running, settings


@pytest.fixture
def sentinel_url(redis_binary: str, tmp_path: Path) -> Iterator[str]:
    server = shutil.which("redis-server")
    if not server:
        need("redis-server (apt-get install redis-server) to run redis-server --sentinel")
    assert server
    master = RedisServer(redis_binary, tmp_path, password="s3cret")
    master.start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nsentinel monitor mym 127.0.0.1 {master.port} 1\n"
        "sentinel auth-pass mym s3cret\n"
    )
    proc = subprocess.Popen(
        [server, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(port=port).execute_command("SENTINEL", "MASTERS"):
                    break
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("sentinel did not start")
            time.sleep(0.05)
        yield f"redis+sentinel://:s3cret@127.0.0.1:{port}/mym/0"
    finally:
        proc.terminate()
        proc.wait(5)
        master.stop()


def test_sentinel_url_reaches_the_master_and_a_worker_runs_jobs(sentinel_url: str) -> None:
    assert "s3cret" not in mask(sentinel_url)
    c = client(sentinel_url, timeout=2)
    assert c.ping()
    q = Queue.from_url(sentinel_url, "sq")
    for i in range(50):
        q.enqueue("inc", i)
    app = App(input_url=sentinel_url, input_queue="sq", output_url=sentinel_url, output_queue="so")

    @app.task
    def inc(x: int) -> int:
        return x + 1

    from gridq.worker.worker import Worker

    run = Running(Worker(app, settings(), install_signals=False))
    try:
        deadline = time.monotonic() + 30
        while c.llen("so") < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        run.stop(15)
    got = sorted(json.loads(x)["result"] for x in c.lrange("so", 0, -1))
    assert got == list(range(1, 51))
