"""Leader election on a real Redis: one leader, handover after its lease, fencing of
the stale one, and a time without any leader recorded as the end of a downtime."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis

from gridq import keys
from gridq.hub.leader import Leader


def test_one_leader_handover_fencing_and_downtime(redis_conn: redis.Redis, redis_url: str) -> None:
    async def scenario() -> None:
        r = aioredis.Redis.from_url(redis_url, decode_responses=True)
        a, b = Leader(r, lease=0.5), Leader(r, lease=0.5)
        assert await a.step() is True and await b.step() is False
        assert a.epoch == 1 and b.token is None
        first_downtime = await r.hget(keys.HUB_LEADER_INFO, "misfire_before")
        assert first_downtime  # the very first leader: nobody led before
        assert await a.step() is True  # renewal keeps the same token
        assert await r.get(keys.HUB_LEADER) == a.token

        stale = a.token
        await asyncio.sleep(0.6)  # a stalls past its lease
        assert a.leading is False  # it knows, locally
        assert await b.step() is True and b.epoch == 2  # handover, next epoch
        assert await r.get(keys.HUB_LEADER) != stale  # a's token fences nothing any more
        assert await a.step() is False and a.token is None
        # A handover is not a downtime: misfire_before did not move.
        assert await r.hget(keys.HUB_LEADER_INFO, "misfire_before") == first_downtime

        await b.release()  # a clean stop hands over at once
        assert await a.step() is True and a.epoch == 3
        await asyncio.sleep(1.7)  # nobody renews for more than three leases
        assert await b.step() is True and b.epoch == 4
        assert await r.hget(keys.HUB_LEADER_INFO, "misfire_before") != first_downtime
        await r.aclose()

    asyncio.run(scenario())
