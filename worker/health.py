"""The liveness probe behind ``gridq worker --check`` (a Docker HEALTHCHECK).

With a metrics port: GET http://127.0.0.1:PORT/health, which answers 200 only while
the worker's lease heartbeat is fresh. Without one: the worker's lease key in Redis
(``INSTANCE_ID`` names it) must exist. Standard library only, no curl needed.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from gridq import contract, keys
from gridq.worker.settings import WorkerSettings


def probe(settings: WorkerSettings, timeout: float = 3.0) -> tuple[bool, str]:
    if settings.metrics_port:
        url = f"http://127.0.0.1:{settings.metrics_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status == 200, f"healthy: {resp.read().decode()}"
        except urllib.error.HTTPError as exc:
            return False, f"unhealthy: {exc.read().decode(errors='replace')}"
        except OSError as exc:
            return False, f"unhealthy: no answer on {url}: {exc}"
    if settings.instance_id and settings.input_url and settings.input_queue:
        from gridq.redisurl import client, mask

        try:
            c = client(settings.input_url, timeout=timeout)
            ttl = c.ttl(keys.QueueKeys(settings.input_queue).alive(settings.instance_id))
        except Exception as exc:
            return False, f"unhealthy: Redis at {mask(settings.input_url)}: {type(exc).__name__}"
        if ttl is not None and int(ttl) > 0:
            return True, f"healthy: lease of {settings.instance_id} has {ttl} s left"
        return False, f"unhealthy: no live lease for {settings.instance_id}"
    return False, (
        f"unhealthy: set {contract.ENV_METRICS_PORT} "
        f"(or {contract.ENV_INSTANCE_ID} and {contract.ENV_INPUT_REDIS_URL}) to check"
    )
