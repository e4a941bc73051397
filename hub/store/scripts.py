"""The hub's Lua scripts: the steps that must read and write Redis in one atomic round trip.

Registered by the sub-store that runs each; the keys they touch are named in gridq/keys.py and
passed in as KEYS, never spelled here.
"""

from __future__ import annotations

# The whole heartbeat in one round trip: authenticate, record, answer.
# - 410 before 401, as Nodes.authenticate: a deleted node is told to register again.
# - The presented secret's SHA-256 (hex, computed by the hub, always 64 characters) is
#   compared with the stored one in constant time: every byte is XORed and OR-ed in,
#   no early exit, and an unknown node is compared against a dummy hash. (This is
#   hmac.compare_digest's job elsewhere; here it runs where the hash is, so the check
#   and the write are one step and a wrong secret writes nothing.)
# - The heartbeat is recorded only if the node still exists (a delete racing with a
#   heartbeat must not resurrect the node), and the answer's parts come back with it.
# KEYS: meta, nodes, seen, assignments, state, caps, the node's secret, deleted set.
# ARGV: node id, record JSON, now, caps JSON, sha256 hex of the presented secret.
# Returns {0} (401), {2} (410), or {1, meta, assignments, spec_version}.
HEARTBEAT = """
if redis.call('SISMEMBER', KEYS[8], ARGV[1]) == 1 then return {2} end
local stored = redis.call('GET', KEYS[7])
local expected = stored or string.rep('0', 64)
local given = ARGV[5]
local diff = 0
if #expected ~= #given then diff = 1 end
for i = 1, #given do
  diff = bit.bor(diff, bit.bxor(string.byte(given, i), string.byte(expected, i) or 0))
end
if diff ~= 0 or not stored then return {0} end
local meta = redis.call('HGET', KEYS[1], ARGV[1])
if not meta then return {2} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
if redis.call('HGET', KEYS[6], ARGV[1]) ~= ARGV[4] then
  redis.call('HSET', KEYS[6], ARGV[1], ARGV[4])
end
local a = redis.call('HGET', KEYS[4], ARGV[1])
local v = redis.call('HGET', KEYS[5], 'spec_version')
return {1, meta, a or '[]', v or '0'}
"""

# What authenticating a node needs, in one round trip: deleted? and the secret's hash.
# The comparison itself stays in Python (hmac.compare_digest, constant time).
AUTH_READ = """
return {redis.call('SISMEMBER', KEYS[2], ARGV[1]), redis.call('GET', KEYS[1])}
"""

# Creates a task only if the name is free, and gives it the next registration number.
CREATE_TASK = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
return 1
"""

UPDATE_TASK = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
