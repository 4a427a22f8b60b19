"""The Lua scripts of the Redis store (text only; `handler.store` registers them).

Every script declares all its keys in KEYS and those keys share one hash tag
(see `handler.keys`), so they run on Redis Cluster unchanged. Amounts are integer
micro-dollars. Reservation expiry uses the server's clock (``TIME``), so workers
with skewed clocks agree on when a crashed worker's reservation lapses.

Lua trap: ``-tonumber("0")`` is ``-0`` and ``HINCRBY key field -0`` fails ("value is
not an integer or out of range"): subtract from 0 instead of negating.

Budget scripts: KEYS = state, res, res_exp, settled, overhead (one budget day).
A reservation belongs to a holder (one worker): its worst-case future bill,
changed at each admission, settlement and heartbeat, and lapsing with the worker.
Operations carry changes, not values, so they may arrive in any order; only an
admission's growth is checked against the limit, and only it may grow it.
"""

from __future__ import annotations

_BUDGET_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function held(holder)
  return tonumber(redis.call('HGET', KEYS[2], holder) or '0')
end
local function sweep(now)
  local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 512)
  for _, id in ipairs(ids) do
    local amount = held(id)
    if amount ~= 0 then
      redis.call('HINCRBY', KEYS[1], 'reserved', 0 - amount)
      redis.call('HDEL', KEYS[2], id)
    end
    redis.call('ZREM', KEYS[3], id)
  end
end
local function hold(holder, change, now, ttl)
  -- changes, not values: a worker's operations travel on several connections and may arrive in
  -- any order; their sum is the same in every order
  local old = held(holder)
  local new = math.max(0, old + change)
  if new > 0 then
    redis.call('HSET', KEYS[2], holder, new)
    redis.call('ZADD', KEYS[3], now + ttl, holder)
  else
    redis.call('HDEL', KEYS[2], holder)
    redis.call('ZREM', KEYS[3], holder)
  end
  if new ~= old then redis.call('HINCRBY', KEYS[1], 'reserved', new - old) end
end
local function keep(state_ms, jobs_ms)
  redis.call('PEXPIRE', KEYS[1], state_ms)
  for i = 2, 5 do redis.call('PEXPIRE', KEYS[i], jobs_ms) end
end
local function counts()
  local v = redis.call('HMGET', KEYS[1], 'spent', 'reserved', 'jobs', 'job_spent', 'boot', 'engine_start', 'idle')
  local out = {}
  for i = 1, 7 do out[i] = tonumber(v[i] or '0') end
  return out
end
local function alert_once(alert_at)
  if alert_at < 0 then return 0 end
  if tonumber(redis.call('HGET', KEYS[1], 'spent') or '0') < alert_at then return 0 end
  return redis.call('HSETNX', KEYS[1], 'alerted', 1)
end
local function reply(ok, first, alert)
  local out = {ok, first, alert}
  for _, v in ipairs(counts()) do out[#out + 1] = v end
  return out
end
"""

# Every budget script answers {ok, first, alert, spent, reserved, jobs, job_spent, boot, engine_start, idle}.

# ARGV: holder, change, limit (-1: none), alert level (-1: none), hold ttl ms, state keep ms, jobs keep ms.
# The holder's reservation changes by `change`. Growing it must fit under the limit; a refusal
# fires the day's alert if it has not fired (the budget is at its end).
RESERVE = (
    _BUDGET_PRELUDE
    + """
local holder, change, limit, alert_at = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
sweep(now)
local c = counts()
if change > 0 and limit >= 0 and c[1] + c[2] + change > limit then
  local alert = 0
  if alert_at >= 0 then alert = redis.call('HSETNX', KEYS[1], 'alerted', 1) end
  return reply(0, 0, alert)
end
hold(holder, change, now, tonumber(ARGV[5]))
keep(ARGV[6], ARGV[7])
return reply(1, 0, 0)
"""
)

# ARGV: holder, change of its reservation, job id, job amount, alert level, hold ttl ms, state keep ms,
# jobs keep ms. Counts the job once per id (first = 1 when counted now) and changes the reservation.
SETTLE = (
    _BUDGET_PRELUDE
    + """
local holder, job, amount = ARGV[1], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
sweep(now)
local first = 0
if redis.call('HSETNX', KEYS[4], job, amount) == 1 then
  first = 1
  redis.call('HINCRBY', KEYS[1], 'spent', amount)
  redis.call('HINCRBY', KEYS[1], 'job_spent', amount)
  redis.call('HINCRBY', KEYS[1], 'jobs', 1)
end
hold(holder, tonumber(ARGV[2]), now, tonumber(ARGV[6]))
keep(ARGV[7], ARGV[8])
return reply(1, first, alert_once(tonumber(ARGV[5])))
"""
)

# ARGV: holder, change of its reservation, alert level, hold ttl ms, state keep ms, jobs keep ms,
# then the holder's cumulative overhead of the day: boot, engine_start, idle.
# Cumulative totals make a repeated or late heartbeat harmless: only growth is counted.
ACCRUE = (
    _BUDGET_PRELUDE
    + """
local holder = ARGV[1]
local now = now_ms()
sweep(now)
local kinds = {'boot', 'engine_start', 'idle'}
for i, kind in ipairs(kinds) do
  local total = tonumber(ARGV[6 + i])
  local field = holder .. ':' .. kind
  local old = tonumber(redis.call('HGET', KEYS[5], field) or '0')
  if total > old then
    redis.call('HSET', KEYS[5], field, total)
    redis.call('HINCRBY', KEYS[1], kind, total - old)
    redis.call('HINCRBY', KEYS[1], 'spent', total - old)
  end
end
hold(holder, tonumber(ARGV[2]), now, tonumber(ARGV[4]))
keep(ARGV[5], ARGV[6])
return reply(1, 0, alert_once(tonumber(ARGV[3])))
"""
)

# ARGV: holder. Drops the holder's reservation.
RELEASE = (
    _BUDGET_PRELUDE
    + """
local now = now_ms()
sweep(now)
hold(ARGV[1], 0 - held(ARGV[1]), now, 1)
return reply(1, 0, 0)
"""
)

# No ARGV.
READ = (
    _BUDGET_PRELUDE
    + """
sweep(now_ms())
return reply(1, 0, 0)
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
