-- Forget a waiter that gave up: its place in the queue, and the lease and the start it may
-- have been granted meanwhile (even if the reply granting them never reached it).
-- KEYS: leases, queue, alive, state. ARGV: id
-- Returns: {held}

local leases, queue, alive, state = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id = ARGV[1]
local held = redis.call('ZREM', leases, id)
redis.call('ZREM', queue, id)
redis.call('ZREM', alive, id)
if held == 1 then
  -- Its start was never used. If it was the last one granted, the bucket steps back as if it
  -- had never been taken; if a start was granted after it, that one does not move, and
  -- nothing is owed.
  local last = redis.call('HMGET', state, 'tat_id', 'tat', 'tat_step')
  if last[1] == id then
    redis.call('HSET', state, 'tat', fmt(tonumber(last[2]) - tonumber(last[3])))
    redis.call('HDEL', state, 'tat_id', 'tat_step')
  end
end
return {held}
