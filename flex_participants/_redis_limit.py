"""One budget of requests for a whole fleet: a `Limiter` whose slots live in Redis.

Twilio counts requests per account, not per process. Every `RedisLimiter` that uses the same
Redis ``key`` shares one cap on requests in flight, one optional pace of requests per second
and one adaptive level, whichever process or machine it runs in.

The protocol, all in Lua scripts that Redis runs atomically, on Redis's own clock:

* ``{key}:leases``, a sorted set of permit ids scored by the time their lease expires. A grant
  first drops the expired ones, so a worker that dies holding slots gives them back after
  ``lease_seconds``; a release removes its permit.
* ``{key}:queue``, a sorted set of waiting permit ids scored by arrival (``{key}:seq``), and
  ``{key}:alive``, the same ids scored by when their waiter last asked plus a grace period. A
  waiter gets a slot only if fewer waiters are ahead of it than there are free slots, so
  waiters are served in arrival order across the fleet; a waiter that stops asking (its
  process died) is dropped from the queue.
* ``{key}:state``, a hash: the shared ``level`` (how many slots there are now), the
  ``generation`` of the last decrease, and ``next_start`` for pacing. A 429 halves the level
  once per burst (only a permit granted since the last decrease lowers it again); a success
  while the window is full adds ``0.5 / level``, never above ``max_concurrency``, as
  `AdaptiveLimiter` does in one process.

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
from collections.abc import Sequence
from typing import Any, Final, Literal

import attrs

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

_LUA_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function extend(key, ms)
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

# KEYS: leases, queue, alive, seq, state
# ARGV: id, max_concurrency, lease_ms, waiter_grace_ms, pace_interval_ms, idle_ms
# Returns: {granted, generation, level, in_flight, waiting_ahead, pace_wait_ms}
_ACQUIRE = (
    _LUA_PRELUDE
    + """
local leases, queue, alive, seq, state = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id = ARGV[1]
local max = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local grace_ms = tonumber(ARGV[4])
local interval = tonumber(ARGV[5])
local idle_ms = tonumber(ARGV[6])

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
redis.call('ZADD', alive, now + grace_ms, id)
local ahead = redis.call('ZRANK', queue, id)
local in_flight = redis.call('ZCARD', leases)
local granted, pace = 0, 0
if ahead < slots - in_flight then
  if interval > 0 then
    local next_start = tonumber(redis.call('HGET', state, 'next_start') or 0)
    if next_start > now then pace = next_start - now end
  end
  if pace == 0 then
    granted = 1
    if interval > 0 then redis.call('HSET', state, 'next_start', now + interval) end
    redis.call('ZADD', leases, now + lease_ms, id)
    redis.call('ZREM', queue, id)
    redis.call('ZREM', alive, id)
    in_flight = in_flight + 1
    if in_flight > tonumber(redis.call('HGET', state, 'peak') or 0) then
      redis.call('HSET', state, 'peak', in_flight)
    end
  end
end
if granted == 1 then extend(leases, lease_ms) end
if redis.call('EXISTS', queue) == 1 then
  extend(queue, grace_ms)
  extend(alive, grace_ms)
end
extend(seq, idle_ms)
if redis.call('EXISTS', state) == 1 then extend(state, idle_ms) end
return {granted, generation, tostring(level), in_flight, ahead, pace}
"""
)

# KEYS: leases, state
# ARGV: id, throttled (0/1), generation of the permit, max_concurrency, growth, idle_ms
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

# KEYS: leases, queue, alive. ARGV: id. Forget a permit or a waiter that was given up.
_FORGET = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return {1}
"""

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
        in_flight: leases held now, by every process (expired ones not counted).
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


def _seconds(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidArgumentError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def _count(name: str, value: object) -> int:
    if type(value) is not int or value < 1:
        raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class RedisLimiter:
    """A `Limiter` whose slots are shared, through Redis, by every process using the same key.

    Pass one to each client, ``FlexClient(limiter=RedisLimiter(redis, max_concurrency=20))``, in
    every worker of the fleet: together they never have more than ``max_concurrency`` requests
    in flight, nor (with ``rate_limit``) start more than ``rate_limit`` per second. A 429 seen
    by any of them halves the shared level for all of them; successes raise it slowly again.

    Slots are leases: a worker that dies holding one frees it after ``lease_seconds``. Keep
    ``lease_seconds`` above the client's ``timeout``, so that a lease never runs out while its
    request is still in flight. Waiters are served in arrival order across the fleet.

    The limiter borrows the Redis client and never closes it. Give every process its own
    client (``redis.asyncio.Redis.from_url(...)``), made in the event loop that uses it.

    Args:
        redis: a ``redis.asyncio.Redis`` client (``decode_responses`` either way).
        key: the name shared by the fleet; the limiter uses keys ``{key}:...`` in Redis.
        max_concurrency: the most requests in flight across the fleet, whatever happens.
        rate_limit: if given, the most requests started per second across the fleet.
        lease_seconds: how long a slot stays taken if its holder never gives it back.
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
        lease_seconds: float = 30.0,
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
        self._max = _count("max_concurrency", max_concurrency)
        rate = None if rate_limit is None else _seconds("rate_limit", rate_limit)
        lease = _seconds("lease_seconds", lease_seconds)
        self._timeout = _seconds("timeout", timeout)
        self._poll = _seconds("poll_interval", poll_interval)
        local_max = _count(
            "local_max_concurrency",
            self._max if local_max_concurrency is None else local_max_concurrency,
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
        self._lease_ms = max(1, round(lease * 1000))
        self._grace_ms = round(max(_WAITER_GRACE_MIN, _WAITER_GRACE_POLLS * self._poll) * 1000)
        self._interval_ms = round(1000 / rate) if rate else 0
        self._on_error = on_redis_error
        self._local = AdaptiveLimiter(local_max, rate_limit=rate)
        self._local_until = 0.0
        self._acquire_script = redis.register_script(_ACQUIRE)
        self._release_script = redis.register_script(_RELEASE)
        self._forget_script = redis.register_script(_FORGET)
        self._read_script = redis.register_script(_READ)
        # This process's waiters, oldest first: a local release wakes the first at once.
        self._wakers: dict[str, asyncio.Future[None]] = {}
        self._level = float(self._max)
        self._in_flight = 0
        self.peak_in_flight = 0
        """The most requests this limiter had in flight at once (in this process)."""
        self.throttled = 0
        """How many 429s this limiter was told of (in this process)."""
        self.expired_leases = 0
        """How many permits came back after their lease had run out (``lease_seconds`` is too short)."""
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
        own after ``lease_seconds`` (a warning is logged, and the next `acquire` deals with
        the failure as ``on_redis_error`` says).

        Raises:
            InvalidArgumentError: ``permit`` did not come from this limiter's `acquire`.
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
                    _IDLE_SECONDS * 1000,
                ],
            )
        except _RedisUnavailableError as failure:
            logger.warning(
                "could not give a slot back to %s (%s); its lease runs out in %.0f s",
                self._where,
                failure,
                self._lease_ms / 1000,
            )
        else:
            if int(reply[0]) == 0:
                self.expired_leases += 1
                logger.warning(
                    "a request held its slot longer than its lease (%.1f s): raise lease_seconds"
                    " above the client's timeout, or the fleet may exceed max_concurrency",
                    self._lease_ms / 1000,
                )
            self._level = float(_text(reply[1]))
        finally:
            self._wake_first()

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
        loop = asyncio.get_running_loop()
        delay = _FIRST_POLL
        granted = False
        self._wakers[permit_id] = loop.create_future()
        try:
            while True:
                reply = await self._call(
                    self._acquire_script,
                    [self._leases, self._queue, self._alive, self._seq, self._state],
                    [
                        permit_id,
                        self._max,
                        self._lease_ms,
                        self._grace_ms,
                        self._interval_ms,
                        _IDLE_SECONDS * 1000,
                    ],
                )
                is_granted, generation, level, _in_flight, _ahead, pace_ms = reply
                self._level = float(_text(level))
                if int(is_granted):
                    granted = True
                    return _RedisPermit(permit_id, int(generation))
                if int(pace_ms) > 0:
                    # Next in line, but the fleet's pace says not yet; keep asking well within
                    # the grace period, so that a long pause does not cost our place.
                    wait = min(int(pace_ms) / 1000, self._grace_ms / 4000)
                else:
                    wait = delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not secrets
                    delay = min(self._poll, delay * 2)
                waker = self._wakers[permit_id]
                await asyncio.wait([waker], timeout=wait)
                if waker.done():
                    # A slot was freed in this process: ask again now.
                    self._wakers[permit_id] = loop.create_future()
                    delay = _FIRST_POLL
        except _RedisUnavailableError:
            raise
        except BaseException:
            # Cancelled (perhaps just after Redis granted the slot): give back what we hold.
            if not granted:
                await self._forget(permit_id)
            raise
        finally:
            self._wakers.pop(permit_id).cancel()

    async def _forget(self, permit_id: str) -> None:
        """Take a waiter that gave up out of the queue, and its lease if it got one meanwhile."""
        with contextlib.suppress(_RedisUnavailableError, asyncio.CancelledError):
            # If this fails, the waiter's grace period, or the lease, runs out on its own.
            await self._call(
                self._forget_script, [self._leases, self._queue, self._alive], [permit_id]
            )

    async def _call(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> list[Any]:
        try:
            async with asyncio.timeout(self._timeout):
                reply = await script(keys=keys, args=args)
        except TimeoutError as exc:
            self.redis_failures += 1
            raise _RedisUnavailableError(f"no answer within {self._timeout:g} s") from exc
        except (RedisError, OSError) as exc:
            self.redis_failures += 1
            raise _RedisUnavailableError(f"{type(exc).__name__}: {exc}") from exc
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
        for waker in self._wakers.values():
            if not waker.done():
                waker.set_result(None)
                return
