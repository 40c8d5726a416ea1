-- Read the shared state of a key.
-- KEYS: leases, queue, state. ARGV: max_concurrency, rate_limit (0: none), recovery_us
-- Returns: {level, in_flight, waiting, throttled, peak, generation, rate}

local max = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local function field(name) return tonumber(redis.call('HGET', KEYS[3], name) or 0) end
local rate = 0
if limit > 0 then rate = limit * current_share(KEYS[3], tonumber(ARGV[3])) end
return {
  fmt(current_level(KEYS[3], max)), redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]),
  field('throttled'), field('peak'), field('generation'), fmt(rate),
}
