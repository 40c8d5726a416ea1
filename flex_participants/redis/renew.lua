-- Renew the leases still held.
-- KEYS: leases. ARGV: lease_us, id...
-- Returns: the ids whose lease had run out already.

local leases = KEYS[1]
local lease_us = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
local lapsed = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', leases, ARGV[i]) then
    redis.call('ZADD', leases, 'XX', 'GT', now + lease_us, ARGV[i])
  else
    lapsed[#lapsed + 1] = ARGV[i]
  end
end
extend(leases, lease_us)
return lapsed
