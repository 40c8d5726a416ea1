-- Give a slot back, and adapt the shared level or rate to the outcome.
-- KEYS: leases, state
-- ARGV: id, throttled (0/1), generation and rate_generation of the permit, concurrency (0/1:
--       whether the 429 was for requests in flight), max_concurrency, growth, idle_us,
--       rate_limit (0: none), burst, recovery_us, rate_cut, min_rate_share
-- Returns: {removed, level, rate}

local leases, state = KEYS[1], KEYS[2]
local max = tonumber(ARGV[6])
local limit = tonumber(ARGV[9])
local burst = tonumber(ARGV[10])
local recovery_us = tonumber(ARGV[11])
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
local removed = redis.call('ZREM', leases, ARGV[1])
local level = current_level(state, max)
local share = 1
if limit > 0 then share = current_share(state, recovery_us) end
if ARGV[2] == '1' then
  redis.call('HINCRBY', state, 'throttled', 1)
  -- One decrease per burst: a 429 to a request granted before the last decrease was
  -- caused by the old level (or rate) and is already accounted for.
  if limit > 0 and ARGV[5] ~= '1' then
    local rate_generation = tonumber(redis.call('HGET', state, 'rate_generation') or 0)
    if tonumber(ARGV[4]) == rate_generation then
      share = math.max(tonumber(ARGV[13]), share * tonumber(ARGV[12]))
      local step = 1000000 / (limit * share)
      -- The bucket is emptied (but starts already reserved keep their place).
      local tat = math.max(now + burst * step, tonumber(redis.call('HGET', state, 'tat') or 0))
      redis.call('HSET', state, 'rate_share', fmt(share), 'rate_cut_at', now,
        'rate_generation', rate_generation + 1, 'tat', fmt(tat))
      redis.call('HDEL', state, 'tat_id', 'tat_step')
    end
  else
    local generation = tonumber(redis.call('HGET', state, 'generation') or 0)
    if tonumber(ARGV[3]) == generation then
      level = math.max(1, level / 2)
      redis.call('HSET', state, 'generation', generation + 1)
    end
  end
else
  local in_flight = redis.call('ZCARD', leases)
  if in_flight + 1 >= math.floor(level) then
    level = math.min(max, level + tonumber(ARGV[7]) / level)
  end
end
redis.call('HSET', state, 'level', fmt(level))
extend(state, tonumber(ARGV[8]))
return {removed, fmt(level), fmt(limit * share)}
