-- Ask for a slot (and, under rate_limit, a start) for one waiter, in arrival order.
-- KEYS: leases, queue, alive, seq, state
-- ARGV: id, max_concurrency, lease_us, waiter_grace_us, horizon_us, idle_us,
--       rate_limit (0: none), burst, recovery_us
-- Returns: {granted, generation, rate_generation, level, rate, in_flight, waiting_ahead,
-- wait_us}: if granted, how long until the start it reserved; if not, how long the bucket
-- says to wait before asking again.

local leases, queue, alive, seq, state = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id = ARGV[1]
local max = tonumber(ARGV[2])
local lease_us = tonumber(ARGV[3])
local grace_us = tonumber(ARGV[4])
local horizon = tonumber(ARGV[5])
local idle_us = tonumber(ARGV[6])
local limit = tonumber(ARGV[7])
local burst = tonumber(ARGV[8])
local recovery_us = tonumber(ARGV[9])

redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', alive, '-inf', now)
for _, waiter in ipairs(gone) do redis.call('ZREM', queue, waiter) end
redis.call('ZREMRANGEBYSCORE', alive, '-inf', now)

local level = current_level(state, max)
local slots = math.floor(level)
local generations = redis.call('HMGET', state, 'generation', 'rate_generation')
local generation = tonumber(generations[1] or 0)
local rate_generation = tonumber(generations[2] or 0)
local rate = 0
if limit > 0 then rate = limit * current_share(state, recovery_us) end
if not redis.call('ZSCORE', queue, id) then
  redis.call('ZADD', queue, redis.call('INCR', seq), id)
end
redis.call('ZADD', alive, now + grace_us, id)
local ahead = redis.call('ZRANK', queue, id)
local in_flight = redis.call('ZCARD', leases)
local granted, wait = 0, 0
if ahead < slots - in_flight then
  local start, tat, step = now, now, 0
  if rate > 0 then
    step = 1000000 / rate
    -- A tat in the past is a full bucket: no saving up beyond burst.
    tat = math.max(now, tonumber(redis.call('HGET', state, 'tat') or now))
    start = math.max(now, tat - (burst - 1) * step)
  end
  if start - now > horizon then
    wait = start - now - horizon
  else
    granted = 1
    wait = start - now
    if rate > 0 then
      -- Who took the last start, and what it cost: a cancelled waiter may give it back.
      redis.call('HSET', state, 'tat', fmt(tat + step), 'tat_id', id, 'tat_step', fmt(step))
    end
    -- The lease runs from the start: renewals before it change nothing (ZADD GT).
    redis.call('ZADD', leases, start + lease_us, id)
    redis.call('ZREM', queue, id)
    redis.call('ZREM', alive, id)
    in_flight = in_flight + 1
    if in_flight > tonumber(redis.call('HGET', state, 'peak') or 0) then
      redis.call('HSET', state, 'peak', in_flight)
    end
  end
end
if granted == 1 then extend(leases, lease_us + wait) end
if redis.call('EXISTS', queue) == 1 then
  extend(queue, grace_us)
  extend(alive, grace_us)
end
extend(seq, idle_us)
if redis.call('EXISTS', state) == 1 then extend(state, idle_us) end
return {granted, generation, rate_generation, fmt(level), fmt(rate), in_flight, ahead, fmt(wait)}
