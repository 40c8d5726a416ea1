-- The start of every script of RedisLimiter (the protocol is in the docstring of _limiter.py):
-- Redis's clock now, in microseconds since the epoch, and what the scripts share.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function fmt(x) return string.format('%.17g', x) end
local function extend(key, us)
  local ms = math.ceil(us / 1000)
  local ttl = redis.call('PTTL', key)
  if ttl >= 0 and ttl < ms or ttl == -1 then redis.call('PEXPIRE', key, ms) end
end
local function current_level(state, max)
  local level = tonumber(redis.call('HGET', state, 'level') or max)
  if level > max then level = max end
  if level < 1 then level = 1 end
  return level
end
-- The share of rate_limit the fleet may use now: from the share kept at the last decrease,
-- back up linearly to all of it over recovery_us.
local function current_share(state, recovery_us)
  local cut = redis.call('HMGET', state, 'rate_share', 'rate_cut_at')
  if not cut[1] then return 1 end
  local share = tonumber(cut[1])
  local elapsed = math.max(0, now - tonumber(cut[2] or now))
  share = share + (1 - share) * elapsed / recovery_us
  if share > 1 then share = 1 end
  return share
end
