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
Operations carry changes, not values, so they may arrive in any order (with the target
value for a holder whose reservation lapsed). Only an admission is checked against the limit;
it is refused whenever spent + reserved would pass it, grown or not.
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
    redis.call('HSET', KEYS[2], id .. '#lapsed', 1)
    redis.call('ZREM', KEYS[3], id)
  end
end
local function hold(holder, change, target, now, ttl)
  -- changes, not values: a worker's operations travel on several connections and may arrive in
  -- any order; their sum is the same in every order. A holder whose reservation lapsed (an
  -- outage longer than its ttl) gets its target instead: the changes before it were swept.
  local old = held(holder)
  local new = math.max(0, old + change)
  if redis.call('HEXISTS', KEYS[2], holder .. '#lapsed') == 1 then
    -- (read first: a script's first write decides whether a full Redis refuses it, and HDEL passes)
    new = math.max(0, target)
    redis.call('HDEL', KEYS[2], holder .. '#lapsed')
  end
  if new > 0 then
    redis.call('HSET', KEYS[2], holder, new)
    redis.call('ZADD', KEYS[3], now + ttl, holder)
  else
    redis.call('HDEL', KEYS[2], holder)
    redis.call('ZREM', KEYS[3], holder)
  end
  if new ~= old then redis.call('HINCRBY', KEYS[1], 'reserved', new - old) end
end
local function raise_job(job, amount)
  -- a job's spend of the day is cumulative: a heartbeat counts the seconds it has used so far,
  -- its settlement the rest; only growth counts, so a late or repeated one counts nothing twice
  local old = tonumber(redis.call('HGET', KEYS[4], job) or '0')
  if amount > old and redis.call('HEXISTS', KEYS[4], job .. '#done') == 0 then
    redis.call('HSET', KEYS[4], job, amount)
    redis.call('HINCRBY', KEYS[1], 'spent', amount - old)
    redis.call('HINCRBY', KEYS[1], 'job_spent', amount - old)
    return amount
  end
  return old
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
local function threshold_alert(alert_at)
  -- 1 for the one operation of the day whose spend reached the alert level
  if alert_at < 0 then return 0 end
  if tonumber(redis.call('HGET', KEYS[1], 'spent') or '0') < alert_at then return 0 end
  return redis.call('HSETNX', KEYS[1], 'alerted', 1)
end
local function refusal_alert(alert_at)
  -- 2 for the day's first refusal
  if alert_at < 0 then return 0 end
  return 2 * redis.call('HSETNX', KEYS[1], 'refused', 1)
end
local function reply(ok, first, alerts, job_total, now)
  local out = {ok, first, alerts, job_total, now}
  for _, v in ipairs(counts()) do out[#out + 1] = v end
  return out
end
"""

# Every budget script answers {ok, first, alerts, job_total, server_ms, spent, reserved, jobs, job_spent,
# boot, engine_start, idle}; alerts: 1 (spend reached the alert level, once a day) + 2 (the day's first
# refusal); job_total: the settled job's count of the day; server_ms: Redis's clock.

# ARGV: holder, change, target, limit (-1: none), alert level (-1: none), hold ttl ms, state keep ms,
# jobs keep ms. The holder's reservation changes by `change`; spent + reserved with it must fit under
# the limit, whether it grows or not (a worker whose own tail no longer fits is refused too).
RESERVE = (
    _BUDGET_PRELUDE
    + """
local holder, change, target, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local alert_at = tonumber(ARGV[5])
local now = now_ms()
sweep(now)
local c = counts()
local after = c[2] + change
if redis.call('HEXISTS', KEYS[2], holder .. '#lapsed') == 1 then after = c[2] + math.max(0, target) end
if limit >= 0 and c[1] + after > limit then
  return reply(0, 0, threshold_alert(alert_at) + refusal_alert(alert_at), 0, now)
end
hold(holder, change, target, now, tonumber(ARGV[6]))
keep(ARGV[7], ARGV[8])
return reply(1, 0, threshold_alert(alert_at), 0, now)
"""
)

# ARGV: holder, change, target, job id, job amount (its cumulative count of the day), final (1: the
# job ended), alert level, hold ttl ms, state keep ms, jobs keep ms. Raises the job's count to the
# amount, counts the job once when final (first = 1 when counted now), changes the reservation.
SETTLE = (
    _BUDGET_PRELUDE
    + """
local holder, job, amount = ARGV[1], ARGV[4], tonumber(ARGV[5])
local now = now_ms()
sweep(now)
local total = raise_job(job, amount)  -- nothing once the job ended: a settlement repeated counts nothing
local first = 0
if ARGV[6] == '1' and redis.call('HSETNX', KEYS[4], job .. '#done', 1) == 1 then
  first = 1
  redis.call('HINCRBY', KEYS[1], 'jobs', 1)
end
hold(holder, tonumber(ARGV[2]), tonumber(ARGV[3]), now, tonumber(ARGV[8]))
keep(ARGV[9], ARGV[10])
return reply(1, first, threshold_alert(tonumber(ARGV[7])), total, now)
"""
)

# ARGV: holder, change, target, alert level, hold ttl ms, state keep ms, jobs keep ms, then the holder's
# cumulative overhead of the day: boot, engine_start, idle; then pairs of a running job's id and its
# cumulative count of the day. Cumulative totals make a repeated or late heartbeat harmless.
ACCRUE = (
    _BUDGET_PRELUDE
    + """
local holder = ARGV[1]
local now = now_ms()
sweep(now)
local kinds = {'boot', 'engine_start', 'idle'}
for i, kind in ipairs(kinds) do
  local total = tonumber(ARGV[7 + i])
  local field = holder .. ':' .. kind
  local old = tonumber(redis.call('HGET', KEYS[5], field) or '0')
  if total > old then
    redis.call('HSET', KEYS[5], field, total)
    redis.call('HINCRBY', KEYS[1], kind, total - old)
    redis.call('HINCRBY', KEYS[1], 'spent', total - old)
  end
end
for i = 11, #ARGV, 2 do raise_job(ARGV[i], tonumber(ARGV[i + 1])) end
hold(holder, tonumber(ARGV[2]), tonumber(ARGV[3]), now, tonumber(ARGV[5]))
keep(ARGV[6], ARGV[7])
return reply(1, 0, threshold_alert(tonumber(ARGV[4])), 0, now)
"""
)

# ARGV: holder. Drops the holder's reservation.
RELEASE = (
    _BUDGET_PRELUDE
    + """
local now = now_ms()
sweep(now)
hold(ARGV[1], 0 - held(ARGV[1]), 0, now, 1)
return reply(1, 0, 0, 0, now)
"""
)

# No ARGV.
READ = (
    _BUDGET_PRELUDE
    + """
local now = now_ms()
sweep(now)
return reply(1, 0, 0, 0, now)
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
