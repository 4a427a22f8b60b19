"""The Lua scripts of the Redis store (text only; `handler.store` registers them).

Every script declares all its keys in KEYS and those keys share one hash tag
(see `handler.keys`), so they run on Redis Cluster unchanged. Amounts are integer
micro-dollars. Reservation expiry uses the server's clock (``TIME``), so workers
with skewed clocks agree on when a crashed worker's reservation lapses.

Lua trap: ``-tonumber("0")`` is ``-0`` and ``HINCRBY key field -0`` fails ("value is
not an integer or out of range"): subtract from 0 instead of negating.

Budget scripts: KEYS = state, res, res_exp, settled (one budget day).
Each returns {spent, reserved, jobs, ...}.
"""

from __future__ import annotations

_BUDGET_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function sweep(now)
  local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 512)
  for _, id in ipairs(ids) do
    local amount = redis.call('HGET', KEYS[2], id)
    if amount then
      redis.call('HINCRBY', KEYS[1], 'reserved', 0 - tonumber(amount))
      redis.call('HDEL', KEYS[2], id)
    end
    redis.call('ZREM', KEYS[3], id)
  end
end
local function drop(job)
  local amount = redis.call('HGET', KEYS[2], job)
  if amount then
    redis.call('HINCRBY', KEYS[1], 'reserved', 0 - tonumber(amount))
    redis.call('HDEL', KEYS[2], job)
    redis.call('ZREM', KEYS[3], job)
  end
end
local function counts()
  local v = redis.call('HMGET', KEYS[1], 'spent', 'reserved', 'jobs')
  return tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0')
end
"""

# ARGV: job id, amount, limit (-1: none), reservation ttl ms, state keep ms, jobs keep ms
# Returns {ok (1/0), spent, reserved, jobs}.
RESERVE = (
    _BUDGET_PRELUDE
    + """
local job, amount, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
sweep(now)
local spent, reserved, jobs = counts()
if redis.call('HEXISTS', KEYS[2], job) == 1 then
  return {1, spent, reserved, jobs}
end
if limit >= 0 and spent + reserved + amount > limit then
  return {0, spent, reserved, jobs}
end
redis.call('HSET', KEYS[2], job, amount)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), job)
reserved = redis.call('HINCRBY', KEYS[1], 'reserved', amount)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
return {1, spent, reserved, jobs}
"""
)

# ARGV: job id, actual amount, alert level (-1: none), state keep ms, jobs keep ms
# Returns {spent, reserved, jobs, first (1: counted now, 0: settled before), alert (1: crossed now)}.
SETTLE = (
    _BUDGET_PRELUDE
    + """
local job, amount, alert_at = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
sweep(now_ms())
drop(job)
local first = 0
local alert = 0
if redis.call('HSETNX', KEYS[4], job, amount) == 1 then
  first = 1
  redis.call('HINCRBY', KEYS[1], 'spent', amount)
  redis.call('HINCRBY', KEYS[1], 'jobs', 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[5])
end
local spent, reserved, jobs = counts()
if alert_at >= 0 and spent >= alert_at then
  if redis.call('HSETNX', KEYS[1], 'alerted', 1) == 1 then alert = 1 end
end
return {spent, reserved, jobs, first, alert}
"""
)

# ARGV: job id. Returns {spent, reserved, jobs}.
RELEASE = (
    _BUDGET_PRELUDE
    + """
sweep(now_ms())
drop(ARGV[1])
local spent, reserved, jobs = counts()
return {spent, reserved, jobs}
"""
)

# No ARGV. Returns {spent, reserved, jobs}.
READ = (
    _BUDGET_PRELUDE
    + """
sweep(now_ms())
local spent, reserved, jobs = counts()
return {spent, reserved, jobs}
"""
)

# KEYS: entry, lock. ARGV: token, lock ttl ms.
# Returns {entry or false, 1 if the lock was taken now}.
GET_OR_LOCK = """
local entry = redis.call('GET', KEYS[1])
if entry then return {entry, 0} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {false, 1} end
return {false, 0}
"""

# KEYS: lock. ARGV: token. Deletes the lock only if we still hold it.
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lock. ARGV: token, ttl ms. Renews the expiry only if we still hold it.
EXTEND_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: hash. ARGV: ttl ms, then field, increment pairs.
INCR_FIELDS = """
for i = 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
