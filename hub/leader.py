"""Leader election among hub replicas, with fencing.

One replica at a time runs the periodic work (the scheduling pass, schedule ticks).
Leadership is a lease: the key ``HUB_LEADER`` holds ``"<epoch>:<replica>"`` with a TTL
of ``GRIDQ_HUB_LEADER_LEASE`` seconds. The leader renews it every quarter lease with a
check-and-extend script; the others try to take it as often. When the leader dies the
key expires and another replica takes it within about 1.25 leases, with the next epoch.

The value is the fencing token: the writes that matter (a schedule's tick claim) carry
the token and the script refuses them unless it is still the current lease's. A
replica that stalled past its lease (GC, a frozen VM) and wakes up believing it leads
can therefore claim nothing. Locally a replica also stops acting as leader at 80 % of
the lease after its last successful renewal, before the key can expire.

Taking the lease after a time without any leader (no renewal for three leases: every
hub was down) records ``misfire_before`` = now in ``HUB_LEADER_INFO``: schedule ticks
due before it are misfires (hub/schedule_times.py), ticks due after it are just late.

Heartbeats never wait on any of this: every replica answers them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import redis.asyncio as aioredis

from gridq import keys
from gridq.outage import OutageLog

log = logging.getLogger("gridq.hub")

# KEYS: lease, info. ARGV: replica id, ttl ms, now, downtime (s).
# Returns the token ("epoch:replica") while this replica holds the lease, else false.
ACQUIRE_OR_RENEW = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, ':', 1, true)
  if sep and string.sub(cur, sep + 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('HSET', KEYS[2], 'renewed', ARGV[3])
    return cur
  end
  return false
end
local epoch = redis.call('HINCRBY', KEYS[2], 'epoch', 1)
local token = epoch .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
local renewed = tonumber(redis.call('HGET', KEYS[2], 'renewed') or '0')
if tonumber(ARGV[3]) - renewed > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[2], 'misfire_before', ARGV[3])
end
redis.call('HSET', KEYS[2], 'holder', ARGV[1], 'since', ARGV[3], 'renewed', ARGV[3])
return token
"""

# KEYS: lease, info. ARGV: token, now. A clean stop hands over without waiting a lease.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'renewed', ARGV[2])
  return 1
end
return 0
"""

DOWNTIME_LEASES = 3  # no renewal for this many leases: every hub was down (misfires)


class Leader:
    """This replica's side of the election; ``token`` is the fence while ``leading``."""

    def __init__(self, r: aioredis.Redis, lease: float) -> None:
        self.r = r
        self.lease = lease
        self.replica = secrets.token_hex(6)
        self.token: str | None = None
        self._valid_until = 0.0
        self._acquire = r.register_script(ACQUIRE_OR_RENEW)
        self._release = r.register_script(RELEASE)
        self._outage = OutageLog(
            log, up_message="leader election: Redis reachable again after %.1f s"
        )

    @property
    def leading(self) -> bool:
        return self.token is not None and time.monotonic() < self._valid_until

    @property
    def epoch(self) -> int | None:
        return int(self.token.split(":", 1)[0]) if self.token else None

    async def step(self) -> bool:
        """Take or renew the lease; True while this replica leads."""
        started = time.monotonic()
        token = await self._acquire(
            keys=[keys.HUB_LEADER, keys.HUB_LEADER_INFO],
            args=[
                self.replica,
                int(self.lease * 1000),
                f"{time.time():.3f}",
                self.lease * DOWNTIME_LEASES,
            ],
        )
        if token:
            if token != self.token:
                log.info("this hub replica leads now (epoch %s)", token.split(":", 1)[0])
            self.token = token
            # Measured from before the call: the key's TTL started no earlier than that.
            self._valid_until = started + self.lease * 0.8
        elif self.token is not None:
            log.warning("this hub replica lost the leadership (epoch %s)", self.epoch)
            self.token = None
        return self.leading

    async def release(self) -> None:
        if self.token is not None:
            await self._release(
                keys=[keys.HUB_LEADER, keys.HUB_LEADER_INFO],
                args=[self.token, f"{time.time():.3f}"],
            )
            self.token = None

    async def run(self) -> None:
        """Hold or contend for the lease for the app's lifetime (survives Redis outages)."""
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Not renewed: `leading` lapses by itself within the lease.
                self._outage.down(f"leader election: the hub's Redis failed: {exc}")
            else:
                self._outage.up()
            await asyncio.sleep(self.lease / 4)
