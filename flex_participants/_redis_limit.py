"""One budget of requests for a whole fleet: a `Limiter` whose slots live in Redis.

Twilio counts requests per account, not per process. Every `RedisLimiter` that uses the same
Redis ``key`` shares one cap on requests in flight, one optional pace of requests per second
and one adaptive level, whichever process or machine it runs in.

The protocol, all in Lua scripts that Redis runs atomically, on Redis's own clock, in
microseconds (Redis ``TIME`` gives seconds and microseconds; microseconds since the epoch are
whole numbers far below 2^53, so a Lua number, a double, holds them exactly):

* ``{key}:leases``, a sorted set of permit ids scored by the time their lease expires. A grant
  first drops the expired ones, so a worker that dies holding slots gives them back within
  ``lease_seconds``; a release removes its permit. While a permit is held, one task per
  limiter renews every lease of this process in one call, every third of a lease, so a slow
  request never loses its slot, however long the client's timeout.
* ``{key}:queue``, a sorted set of waiting permit ids scored by arrival (``{key}:seq``), and
  ``{key}:alive``, the same ids scored by when their waiter last asked plus a grace period. A
  waiter gets a slot only if fewer waiters are ahead of it than there are free slots, so
  waiters are served in arrival order across the fleet; a waiter that stops asking (its
  process died) is dropped from the queue.
* ``{key}:state``, a hash: the shared ``level`` (how many slots there are now), the
  ``generation`` of the last decrease, and the pacing schedule. A 429 halves the level once
  per burst (only a permit granted since the last decrease lowers it again); a success while
  the window is full adds ``0.5 / level``, never above ``max_concurrency``, as
  `AdaptiveLimiter` does in one process.
* Pacing, with ``rate_limit``: start ``n`` of the schedule is at ``pace_origin + n * interval``
  (``pace_next`` is the next ``n`` to give), computed afresh each time, so that no rounding
  adds up. A waiter whose turn comes within ``poll_interval`` reserves its start, takes its
  slot and sleeps until then; a schedule that fell behind restarts now, with no catching up.
  A waiter cancelled before its start gives the start back: the schedule steps back if it
  was the last one, and otherwise ``{key}:gaps`` keeps it for the next waiter.

Waiters poll with a short jittered backoff, and a release in this process wakes the oldest
waiter of this process at once. Every Redis call runs under ``timeout``: if Redis fails, the
limiter raises `TransportError` naming Redis, or falls back to a local `AdaptiveLimiter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
import weakref
from collections.abc import Sequence
from typing import Any, Final, Literal

import attrs

from ._arguments import check_count, check_quantity
from ._errors import InvalidArgumentError, TransportError
from ._limit import AdaptiveLimiter

try:
    import redis.asyncio as _redis_asyncio
    from redis.commands.core import AsyncScript
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "RedisLimiter needs the redis package: pip install 'flex-participants[redis]'"
    ) from exc

__all__ = ["RedisLimitState", "RedisLimiter"]

logger = logging.getLogger("flex_participants")

_GROWTH: Final = 0.5
# A waiter polls at least this often, so a gap of this many polls means its process is gone.
_WAITER_GRACE_POLLS: Final = 20
_WAITER_GRACE_MIN: Final = 2.0
_FIRST_POLL: Final = 0.002
# How long an idle key keeps its level: a fleet that comes back after this starts at the top.
_IDLE_SECONDS: Final = 3600
# After Redis failed with on_redis_error="local", how long before Redis is tried again.
_RETRY_REDIS_AFTER: Final = 5.0
# Leases are renewed this many times per lease: one renewal may fail (within ``timeout``)
# and the next still comes before the lease runs out.
_RENEWALS_PER_LEASE: Final = 3
_MICROSECONDS: Final = 1_000_000

_LUA_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
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
"""

# KEYS: leases, queue, alive, seq, state, gaps
# ARGV: id, max_concurrency, lease_us, waiter_grace_us, interval_us, horizon_us, idle_us
# Returns: {granted, generation, level, in_flight, waiting_ahead, wait_us}: if granted, how
# long until the start it reserved; if not, how long the pace says to wait before asking again.
_ACQUIRE = (
    _LUA_PRELUDE
    + """
local leases, queue, alive, seq, state, gaps = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id = ARGV[1]
local max = tonumber(ARGV[2])
local lease_us = tonumber(ARGV[3])
local grace_us = tonumber(ARGV[4])
local interval = tonumber(ARGV[5])
local horizon = tonumber(ARGV[6])
local idle_us = tonumber(ARGV[7])

redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', alive, '-inf', now)
for _, waiter in ipairs(gone) do redis.call('ZREM', queue, waiter) end
redis.call('ZREMRANGEBYSCORE', alive, '-inf', now)

local level = current_level(state, max)
local slots = math.floor(level)
local generation = tonumber(redis.call('HGET', state, 'generation') or 0)
if not redis.call('ZSCORE', queue, id) then
  redis.call('ZADD', queue, redis.call('INCR', seq), id)
end
redis.call('ZADD', alive, now + grace_us, id)
local ahead = redis.call('ZRANK', queue, id)
local in_flight = redis.call('ZCARD', leases)
local granted, wait = 0, 0
if ahead < slots - in_flight then
  local start, gap, index, origin = now, nil, 0, now
  if interval > 0 then
    local stored = redis.call('HGET', state, 'pace_origin')
    if stored then origin = tonumber(stored) else redis.call('DEL', gaps) end
    local next_index = tonumber(redis.call('HGET', state, 'pace_next') or 0)
    -- A start given back by a cancelled waiter, if still ahead, is taken first.
    while true do
      gap = redis.call('ZRANGE', gaps, 0, 0)[1]
      if not gap or origin + tonumber(gap) * interval >= now then break end
      redis.call('ZREM', gaps, gap)
    end
    if gap then
      index = tonumber(gap)
    elseif origin + next_index * interval < now then
      -- Behind schedule (nobody was waiting): start now, with no catching up.
      origin, index = now, 0
    else
      index = next_index
    end
    start = origin + index * interval
  end
  if start - now > horizon then
    wait = start - now - horizon
  else
    granted = 1
    wait = start - now
    if gap then
      redis.call('ZREM', gaps, gap)
    elseif interval > 0 then
      redis.call('HSET', state, 'pace_origin', origin, 'pace_next', index + 1)
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
return {granted, generation, tostring(level), in_flight, ahead, string.format('%.17g', wait)}
"""
)

# KEYS: leases. ARGV: lease_us, id...
# Renews the leases still held; returns the ids whose lease had run out already.
_RENEW = (
    _LUA_PRELUDE
    + """
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
"""
)

# KEYS: leases, state
# ARGV: id, throttled (0/1), generation of the permit, max_concurrency, growth, idle_us
# Returns: {removed, level}
_RELEASE = (
    _LUA_PRELUDE
    + """
local leases, state = KEYS[1], KEYS[2]
local max = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
local removed = redis.call('ZREM', leases, ARGV[1])
local level = current_level(state, max)
if ARGV[2] == '1' then
  redis.call('HINCRBY', state, 'throttled', 1)
  local generation = tonumber(redis.call('HGET', state, 'generation') or 0)
  -- One decrease per burst: a 429 to a request granted before the last decrease was
  -- caused by the old level and is already accounted for.
  if tonumber(ARGV[3]) == generation then
    level = math.max(1, level / 2)
    redis.call('HSET', state, 'generation', generation + 1)
  end
else
  local in_flight = redis.call('ZCARD', leases)
  if in_flight + 1 >= math.floor(level) then
    level = math.min(max, level + tonumber(ARGV[5]) / level)
  end
end
redis.call('HSET', state, 'level', string.format('%.17g', level))
extend(state, tonumber(ARGV[6]))
return {removed, tostring(level)}
"""
)

# KEYS: leases, queue, alive, state, gaps. ARGV: id, lease_us, interval_us, idle_us
# Forget a waiter that gave up: its place in the queue, and the lease and the start it may
# have been granted meanwhile (even if the reply granting them never reached it).
_FORGET = (
    _LUA_PRELUDE
    + """
local leases, queue, alive, state, gaps = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id = ARGV[1]
local interval = tonumber(ARGV[3])
local score = redis.call('ZSCORE', leases, id)
redis.call('ZREM', leases, id)
redis.call('ZREM', queue, id)
redis.call('ZREM', alive, id)
-- Below a few microseconds a start could not be told from its neighbours; no fleet is that
-- fast, so such a schedule is always behind and reserves no start ahead anyway.
if score and interval >= 4 then
  -- Its start is its lease's expiry less one lease (no renewal moves it before the start).
  local start = tonumber(score) - tonumber(ARGV[2])
  local origin = tonumber(redis.call('HGET', state, 'pace_origin') or 0)
  local next_index = tonumber(redis.call('HGET', state, 'pace_next') or 0)
  if start > now and origin > 0 then
    local index = math.floor((start - origin) / interval + 0.5)
    if index == next_index - 1 then
      -- The last start given: the schedule steps back, over any gaps just before it too.
      while redis.call('ZREM', gaps, index - 1) == 1 do index = index - 1 end
      redis.call('HSET', state, 'pace_next', index)
    elseif index >= 0 and index < next_index then
      redis.call('ZADD', gaps, index, index)
      extend(gaps, tonumber(ARGV[4]))
    end
  end
end
return {1}
"""
)

# KEYS: leases, queue, state. Returns: {level, in_flight, waiting, throttled, peak, generation}
_READ = (
    _LUA_PRELUDE
    + """
local max = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local function field(name) return tonumber(redis.call('HGET', KEYS[3], name) or 0) end
return {
  tostring(current_level(KEYS[3], max)), redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]),
  field('throttled'), field('peak'), field('generation'),
}
"""
)


class _RedisUnavailableError(Exception):
    """Redis did not answer in time or answered with an error; the cause is chained."""


@attrs.frozen
class _RedisPermit:
    id: str
    generation: int


@attrs.frozen
class _LocalPermit:
    inner: object


@attrs.frozen
class RedisLimitState:
    """What a `RedisLimiter` key holds in Redis now, as `RedisLimiter.read_state` returns it.

    Attributes:
        level: how many requests the fleet may have in flight now (1 to ``max_concurrency``).
        in_flight: leases held now, by every process (expired ones not counted); a waiter
            that reserved a start under ``rate_limit`` holds its lease from then.
        waiting: waiters in the queue, from every process.
        throttled: 429s reported by every process since the key was created.
        peak_in_flight: the most leases that were held at once.
        generation: how many times the level was lowered for a burst of 429s.
    """

    level: int
    in_flight: int
    waiting: int
    throttled: int
    peak_in_flight: int
    generation: int


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _describe(client: object) -> str:
    """``Redis at host:port/db``, from the client's connection settings (never its password)."""
    pool = getattr(client, "connection_pool", None)
    settings = getattr(pool, "connection_kwargs", None)
    if not isinstance(settings, dict):
        return "Redis"
    if settings.get("path"):
        return f"Redis at unix:{settings['path']}"
    host = settings.get("host", "localhost")
    port = settings.get("port", 6379)
    return f"Redis at {host}:{port}/{settings.get('db', 0)}"


class RedisLimiter:
    """A `Limiter` whose slots are shared, through Redis, by every process using the same key.

    Pass one to each client, ``FlexClient(limiter=RedisLimiter(redis, max_concurrency=20))``, in
    every worker of the fleet: together they never have more than ``max_concurrency`` requests
    in flight, nor (with ``rate_limit``) start more than ``rate_limit`` per second. A 429 seen
    by any of them halves the shared level for all of them; successes raise it slowly again.
    Waiters are served in arrival order across the fleet.

    Slots are leases, renewed while they are held: one task per limiter, started with the
    first permit and stopped with the last, renews every lease of this process in one Redis
    call every third of ``lease_seconds``. So a request keeps its slot however long it runs,
    whatever the client's ``timeout``, and a worker that dies (or drops a permit without
    releasing it) frees its slots within ``lease_seconds``. Keep ``lease_seconds`` at least
    three times ``timeout``, so that one renewal may fail and the next still comes in time.

    The limiter borrows the Redis client and never closes it. Give every process its own
    client (``redis.asyncio.Redis.from_url(...)``), made in the event loop that uses it.

    Args:
        redis: a ``redis.asyncio.Redis`` client (``decode_responses`` either way).
        key: the name shared by the fleet; the limiter uses keys ``{key}:...`` in Redis.
        max_concurrency: the most requests in flight across the fleet, whatever happens.
        rate_limit: if given, the most requests started per second across the fleet, spaced
            evenly. A waiter whose start comes within ``poll_interval`` reserves it and holds
            its slot until then; one cancelled before its start gives the start back.
        lease_seconds: how long the slots of a worker that died stay taken.
        on_redis_error: what to do when Redis fails or does not answer within ``timeout``:
            ``"raise"``: `acquire` raises `TransportError`; ``"local"``: log a warning and
            limit this process alone with an `AdaptiveLimiter` of ``local_max_concurrency``,
            trying Redis again every few seconds.
        local_max_concurrency: the local limit used after a Redis failure with
            ``on_redis_error="local"``; default ``max_concurrency`` (set it to this process's
            share of the budget if the fleet must stay under it even then).
        timeout: seconds any one Redis call may take.
        poll_interval: the longest a waiter waits before asking Redis again.

    Raises:
        InvalidArgumentError: (a `ValueError`) an argument is out of range.
    """

    def __init__(
        self,
        redis: _redis_asyncio.Redis,
        *,
        key: str = "flex_participants",
        max_concurrency: int,
        rate_limit: float | None = None,
        lease_seconds: float = 10.0,
        on_redis_error: Literal["raise", "local"] = "raise",
        local_max_concurrency: int | None = None,
        timeout: float = 2.0,
        poll_interval: float = 0.05,
    ) -> None:
        if not callable(getattr(redis, "register_script", None)):
            raise InvalidArgumentError(
                f"redis must be a redis.asyncio.Redis client, got {type(redis).__name__}"
            )
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"key must be a non-empty string, got {key!r}")
        if on_redis_error not in ("raise", "local"):
            raise InvalidArgumentError(
                f'on_redis_error must be "raise" or "local", got {on_redis_error!r}'
            )
        self._max = check_count("max_concurrency", max_concurrency, minimum=1)
        rate = (
            None
            if rate_limit is None
            else check_quantity("rate_limit", rate_limit, strict=True, unit="requests per second")
        )
        lease = check_quantity("lease_seconds", lease_seconds, strict=True, unit="seconds")
        self._timeout = check_quantity("timeout", timeout, strict=True, unit="seconds")
        self._poll = check_quantity("poll_interval", poll_interval, strict=True, unit="seconds")
        local_max = check_count(
            "local_max_concurrency",
            self._max if local_max_concurrency is None else local_max_concurrency,
            minimum=1,
        )
        self._redis = redis
        self._where = _describe(redis)
        self._key = key
        # One hash tag, so that the scripts' keys share a slot on a Redis Cluster too.
        prefix = "{" + key + "}"
        self._leases = f"{prefix}:leases"
        self._queue = f"{prefix}:queue"
        self._alive = f"{prefix}:alive"
        self._seq = f"{prefix}:seq"
        self._state = f"{prefix}:state"
        self._gaps = f"{prefix}:gaps"
        self._lease = lease
        self._lease_us = max(1, round(lease * _MICROSECONDS))
        self._grace_us = round(max(_WAITER_GRACE_MIN, _WAITER_GRACE_POLLS * self._poll) * 1e6)
        # Exact, not rounded: the script computes each start from it afresh.
        self._interval_us = _MICROSECONDS / rate if rate else 0.0
        self._horizon_us = round(self._poll * _MICROSECONDS)
        self._on_error = on_redis_error
        self._local = AdaptiveLimiter(local_max, rate_limit=rate)
        self._local_until = 0.0
        self._acquire_script = redis.register_script(_ACQUIRE)
        self._renew_script = redis.register_script(_RENEW)
        self._release_script = redis.register_script(_RELEASE)
        self._forget_script = redis.register_script(_FORGET)
        self._read_script = redis.register_script(_READ)
        # This process's waiters, oldest first: a local release wakes the first at once.
        self._wakers: dict[str, asyncio.Future[None]] = {}
        # The permits out in Redis, whose leases the renewal task keeps: weakly, so that a
        # permit dropped without a release stops being renewed and its lease runs out.
        self._held: weakref.WeakValueDictionary[str, _RedisPermit] = weakref.WeakValueDictionary()
        self._renewal: asyncio.Task[None] | None = None
        self._level = float(self._max)
        self._in_flight = 0
        self.peak_in_flight = 0
        """The most requests this limiter had in flight at once (in this process)."""
        self.throttled = 0
        """How many 429s this limiter was told of (in this process)."""
        self.expired_leases = 0
        """How many permits came back after their lease had run out (its renewals failed)."""
        self.redis_failures = 0
        """How many Redis calls failed or timed out."""

    def __repr__(self) -> str:
        mode = " local" if self.using_local else ""
        return (
            f"<RedisLimiter{mode} key={self._key!r} level={self.level}/{self._max}"
            f" in_flight={self._in_flight} waiting={len(self._wakers)} {self._where}>"
        )

    @property
    def key(self) -> str:
        """The name shared by the fleet."""
        return self._key

    @property
    def max_concurrency(self) -> int:
        """The ceiling of `level`."""
        return self._max

    @property
    def level(self) -> int:
        """The shared level as last seen from Redis (1 to `max_concurrency`)."""
        return max(1, math.floor(self._level))

    @property
    def in_flight(self) -> int:
        """How many permits of this limiter (this process) are out now."""
        return self._in_flight

    @property
    def using_local(self) -> bool:
        """Whether the limiter is on its local fallback now, after a Redis failure."""
        return time.monotonic() < self._local_until

    # -- the Limiter protocol -------------------------------------------------------------

    async def acquire(self) -> object:
        """Wait for a slot shared by the fleet, in arrival order; return the permit.

        Raises:
            TransportError: Redis failed or did not answer within ``timeout``, and
                ``on_redis_error`` is ``"raise"``.
        """
        if not self.using_local:
            try:
                shared = await self._acquire_shared()
            except _RedisUnavailableError as failure:
                self._on_failure(failure, "acquire")
            else:
                self._took()
                return shared
        permit = _LocalPermit(await self._local.acquire())
        self._took()
        return permit

    async def release(self, permit: object, *, throttled: bool) -> None:
        """Give the slot back and tell the fleet's level about the outcome.

        A release never raises for Redis: if Redis cannot be reached, the lease runs out on its
        own within ``lease_seconds`` (a warning is logged, and the next `acquire` deals with
        the failure as ``on_redis_error`` says).

        Raises:
            InvalidArgumentError: ``permit`` did not come from this limiter's `acquire`.
            Exception: whatever unexpected error stopped the renewal of this limiter's leases
                (a bug: Redis failures there are logged and retried), after the slot is given
                back.
        """
        if isinstance(permit, _LocalPermit):
            self._in_flight -= 1
            await self._local.release(permit.inner, throttled=throttled)
            return
        if not isinstance(permit, _RedisPermit):
            raise InvalidArgumentError(f"not a permit of this limiter: {permit!r}")
        self._in_flight -= 1
        if throttled:
            self.throttled += 1
        self._held.pop(permit.id, None)
        try:
            reply = await self._call(
                self._release_script,
                [self._leases, self._state],
                [
                    permit.id,
                    int(throttled),
                    permit.generation,
                    self._max,
                    _GROWTH,
                    _IDLE_SECONDS * _MICROSECONDS,
                ],
            )
        except _RedisUnavailableError as failure:
            logger.warning(
                "could not give a slot back to %s (%s); its lease runs out within %g s",
                self._where,
                failure,
                self._lease,
            )
        else:
            if int(reply[0]) == 0:
                self.expired_leases += 1
                logger.warning(
                    "a request's slot lease (%g s) ran out before it was given back, because"
                    " it could not be renewed in time: the fleet may have exceeded"
                    " max_concurrency meanwhile",
                    self._lease,
                )
            self._level = float(_text(reply[1]))
        finally:
            self._wake_first()
            await self._stop_renewal_if_idle()
        self._raise_renewal_failure()

    # -- reading the shared state -----------------------------------------------------------

    async def read_state(self) -> RedisLimitState:
        """Read the shared level and counters of this limiter's key from Redis.

        Raises:
            TransportError: Redis failed or did not answer within ``timeout``.
        """
        try:
            reply = await self._call(
                self._read_script, [self._leases, self._queue, self._state], [self._max]
            )
        except _RedisUnavailableError as failure:
            raise self._error(failure) from failure.__cause__
        level, in_flight, waiting, throttled, peak, generation = reply
        self._level = float(_text(level))
        return RedisLimitState(
            level=self.level,
            in_flight=int(in_flight),
            waiting=int(waiting),
            throttled=int(throttled),
            peak_in_flight=int(peak),
            generation=int(generation),
        )

    # -- inside -----------------------------------------------------------------------------

    async def _acquire_shared(self) -> _RedisPermit:
        permit_id = uuid.uuid4().hex
        try:
            generation, start_in = await self._wait_for_grant(permit_id)
            permit = _RedisPermit(permit_id, generation)
            self._held[permit_id] = permit
            self._start_renewal()
            if start_in > 0:
                # A start reserved under rate_limit: the slot is ours, the start not yet.
                await asyncio.sleep(start_in)
        except _RedisUnavailableError:
            raise
        except BaseException:
            # Cancelled, perhaps just as Redis granted a slot and a start: give them back.
            await self._forget(permit_id)
            raise
        return permit

    async def _wait_for_grant(self, permit_id: str) -> tuple[int, float]:
        """Ask Redis until it grants a slot; return its generation and seconds to its start."""
        loop = asyncio.get_running_loop()
        delay = _FIRST_POLL
        self._wakers[permit_id] = loop.create_future()
        try:
            while True:
                reply = await self._call(
                    self._acquire_script,
                    [self._leases, self._queue, self._alive, self._seq, self._state, self._gaps],
                    [
                        permit_id,
                        self._max,
                        self._lease_us,
                        self._grace_us,
                        repr(self._interval_us),
                        self._horizon_us,
                        _IDLE_SECONDS * _MICROSECONDS,
                    ],
                )
                is_granted, generation, level, _in_flight, _ahead, wait_us = reply
                self._level = float(_text(level))
                wait = float(_text(wait_us)) / _MICROSECONDS
                if int(is_granted):
                    return int(generation), wait
                if wait > 0:
                    # Next in line, but the fleet's pace says not yet; keep asking well within
                    # the grace period, so that a long pause does not cost our place.
                    wait = min(wait, self._grace_us / _MICROSECONDS / 4)
                else:
                    wait = delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not secrets
                    delay = min(self._poll, delay * 2)
                waker = self._wakers[permit_id]
                await asyncio.wait([waker], timeout=wait)
                if waker.done():
                    # A slot was freed in this process: ask again now.
                    self._wakers[permit_id] = loop.create_future()
                    delay = _FIRST_POLL
        finally:
            self._wakers.pop(permit_id).cancel()

    async def _forget(self, permit_id: str) -> None:
        """Take a waiter that gave up out of the queue, with the lease and start it may hold."""
        self._held.pop(permit_id, None)
        with contextlib.suppress(_RedisUnavailableError, asyncio.CancelledError):
            # If this fails, the waiter's grace period, or the lease, runs out on its own.
            await self._call(
                self._forget_script,
                [self._leases, self._queue, self._alive, self._state, self._gaps],
                [
                    permit_id,
                    self._lease_us,
                    repr(self._interval_us),
                    _IDLE_SECONDS * _MICROSECONDS,
                ],
            )
        await self._stop_renewal_if_idle()

    # -- lease renewal ----------------------------------------------------------------------

    def _start_renewal(self) -> None:
        """Make sure the renewal task runs; raise what ended it, if it failed."""
        self._raise_renewal_failure()
        if self._renewal is None:
            self._renewal = asyncio.get_running_loop().create_task(
                self._renew_leases(), name=f"RedisLimiter({self._key!r}) lease renewal"
            )

    async def _stop_renewal_if_idle(self) -> None:
        """Once no permit is held, stop the renewal task and wait for it to end.

        A task that failed stays, for `_raise_renewal_failure` to raise: never here, where
        a cancellation being handled must not turn into another error.
        """
        task = self._renewal
        if task is None or self._held:
            return
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
        if task.cancelled() or task.exception() is None:
            self._renewal = None

    def _raise_renewal_failure(self) -> None:
        """Raise what ended the renewal task, if it ended with an error (a bug: Redis failures
        are logged and retried), so that it is seen by the next release or grant."""
        task = self._renewal
        if task is None or not task.done():
            return
        self._renewal = None
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error

    async def _renew_leases(self) -> None:
        """Renew the leases of every permit held, in one call a third of a lease apart."""
        every = self._lease / _RENEWALS_PER_LEASE
        lapsed: set[str] = set()
        failing = False
        while True:
            await asyncio.sleep(every)
            held = list(self._held.keys())
            if not held:
                return  # the last permits were dropped without a release
            lapsed.intersection_update(held)
            ids = [permit_id for permit_id in held if permit_id not in lapsed]
            if not ids:
                continue
            try:
                reply = await self._call(self._renew_script, [self._leases], [self._lease_us, *ids])
            except _RedisUnavailableError as failure:
                if not failing:
                    logger.warning(
                        "could not renew the slot leases of this process at %s (%s): they run"
                        " out within %g s unless a renewal succeeds",
                        self._where,
                        failure,
                        self._lease,
                    )
                failing = True
                continue
            if failing:
                logger.info("renewing the slot leases at %s again", self._where)
                failing = False
            lapsed.update(_text(permit_id) for permit_id in reply)

    # -- Redis calls and their failures -----------------------------------------------------

    async def _call(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> list[Any]:
        task = asyncio.current_task()
        cancelling = 0 if task is None else task.cancelling()
        try:
            async with asyncio.timeout(self._timeout):
                reply = await script(keys=keys, args=args)
        except TimeoutError as exc:
            self.redis_failures += 1
            raise _RedisUnavailableError(f"no answer within {self._timeout:g} s") from exc
        except (RedisError, OSError) as exc:
            self.redis_failures += 1
            raise _RedisUnavailableError(f"{type(exc).__name__}: {exc}") from exc
        if task is not None and task.cancelling() > cancelling:
            # Cancelled, but the call returned: on Python 3.11, asyncio.wait_for (which
            # redis-py uses to write) drops a cancellation that comes as its write completes
            # (python/cpython#86296). Left so, a cancelled waiter would poll for ever.
            raise asyncio.CancelledError
        assert isinstance(reply, list)
        return reply

    def _on_failure(self, failure: _RedisUnavailableError, during: str) -> None:
        if self._on_error == "raise":
            raise self._error(failure) from failure.__cause__
        logger.warning(
            "%s failed during %s (%s): limiting this process alone, to %d requests in flight,"
            " for %.0f s",
            self._where,
            during,
            failure,
            self._local.max_concurrency,
            _RETRY_REDIS_AFTER,
        )
        self._local_until = time.monotonic() + _RETRY_REDIS_AFTER

    def _error(self, failure: _RedisUnavailableError) -> TransportError:
        return TransportError(
            f"the rate limit shared through {self._where} (key {self._key!r}) is unavailable:"
            f" {failure}"
        )

    def _took(self) -> None:
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)

    def _wake_first(self) -> None:
        for waiter in self._wakers.values():
            if not waiter.done():
                waiter.set_result(None)
                return
