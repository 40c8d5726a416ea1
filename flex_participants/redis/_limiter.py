"""One budget of requests for a whole fleet: a `Limiter` whose slots live in Redis.

Twilio counts requests per account, not per process. Every `RedisLimiter` that uses the same
Redis ``key`` shares one cap on requests in flight, one optional token bucket of requests per
second and one adaptive level, whichever process or machine it runs in.

The protocol, all in the Lua scripts next to this module (``*.lua``), which Redis runs
atomically, on Redis's own clock, in microseconds (Redis ``TIME`` gives seconds and
microseconds; microseconds since the epoch are whole numbers far below 2^53, so a Lua number,
a double, holds them exactly):

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
* ``{key}:state``, a hash: the shared ``level`` (how many slots there are now) and the
  ``generation`` of its last decrease; with ``rate_limit``, the bucket (``tat``) and the
  shared rate (``rate_share``, ``rate_cut_at``, ``rate_generation``); and counters. A 429 for
  requests in flight (code 45780, or any 429 without ``rate_limit``) halves the level once
  per burst (only a permit granted since the last decrease lowers it again); a success while
  the window is full adds ``0.5 / level``, never above ``max_concurrency``, as
  `AdaptiveLimiter` does in one process.
* The bucket, with ``rate_limit``, is a GCRA: ``tat``, the theoretical arrival time, is when
  the bucket would be full again. A start at ``now`` is allowed if ``now >= tat - (burst - 1)
  * interval``, and takes ``tat = max(tat, now) + interval``: so any window of ``t`` seconds
  holds at most ``burst + rate * t`` starts, fleet-wide. A waiter whose allowed start comes
  within ``poll_interval`` reserves it, takes its slot and sleeps until then. A waiter
  cancelled before its start gives it back: ``tat`` steps back one interval if no start was
  granted after it (otherwise nothing is owed: the later start was placed after it and does
  not move, so a token handed on could put two starts where the bucket allows one).
* The shared rate: any other 429 (code 20429, or none) multiplies it by 0.7, once per burst
  (``rate_generation``, as for the level), never below a twentieth of ``rate_limit``, and
  empties the bucket (``tat = now + burst * interval``), so that no burst follows a 429. It
  then grows back linearly to ``rate_limit`` over ten seconds: the scripts compute it from
  the share kept at the last decrease and the time of it, and never go above ``rate_limit``.

Waiters poll with a short jittered backoff, and a release in this process wakes the oldest
waiter of this process at once. Every Redis call runs under ``timeout``: if Redis fails, the
limiter raises `TransportError` naming Redis, or falls back to a local `AdaptiveLimiter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import random
import time
import uuid
import weakref
from collections.abc import Sequence
from typing import Any, Final, Literal

import attrs
import redis.asyncio as _redis_asyncio
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from .._arguments import check_burst, check_count, check_quantity, check_rate
from .._errors import InvalidArgumentError, TransportError
from .._interrupt import uninterrupted
from .._limit import AdaptiveLimiter, SlotWindow, Throttle, default_burst

__all__ = ["RedisLimitState", "RedisLimiter"]

logger = logging.getLogger("flex_participants")

_GROWTH: Final = 0.5
# A 429 for the rate multiplies the shared rate by this, once per burst of 429s...
_RATE_CUT: Final = 0.7
# ...never below this share of rate_limit (the bucket it empties is refilled at that rate)...
_MIN_RATE_SHARE: Final = 0.05
# ...and the rate grows back linearly to rate_limit in this many seconds.
_RATE_RECOVERY_SECONDS = 10.0
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

# The scripts, read once: each is the prelude (Redis's clock and the helpers they share), then
# its own file, which says what it takes and returns.
_SCRIPTS = importlib.resources.files(__package__)
_PRELUDE: Final = _SCRIPTS.joinpath("prelude.lua").read_text(encoding="utf-8")


def _script(name: str) -> str:
    return _PRELUDE + _SCRIPTS.joinpath(f"{name}.lua").read_text(encoding="utf-8")


_ACQUIRE: Final = _script("acquire")
_RENEW: Final = _script("renew")
_RELEASE: Final = _script("release")
_FORGET: Final = _script("forget")
_READ: Final = _script("read")


class _RedisUnavailableError(Exception):
    """Redis did not answer in time or answered with an error; the cause is chained."""


@attrs.frozen
class _RedisPermit:
    id: str
    generation: int
    rate_generation: int


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
        rate: the requests per second the fleet may start now, under ``rate_limit``: lowered
            by 429s for the rate and growing back to ``rate_limit`` (``None`` without one).
    """

    level: int
    in_flight: int
    waiting: int
    throttled: int
    peak_in_flight: int
    generation: int
    rate: float | None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _recovery_us() -> int:
    return round(_RATE_RECOVERY_SECONDS * _MICROSECONDS)


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


class RedisLimiter(SlotWindow):
    """A `~flex_participants.Limiter` whose slots are shared, through Redis, by every process
    using the same key.

    Pass one to each client, ``FlexClient(limiter=RedisLimiter(redis, max_concurrency=20))``, in
    every worker of the fleet: together they never have more than ``max_concurrency`` requests
    in flight, nor (with ``rate_limit``) start more than ``burst + rate_limit * t`` requests in
    any ``t`` seconds: one token bucket for the fleet, which lets a burst through at once and
    then one request every ``1 / rate_limit`` seconds. Waiters are served in arrival order
    across the fleet.

    A 429 seen by any of them slows all of them, once per burst of 429s. A 429 for requests
    in flight (code 45780), or any 429 without ``rate_limit``, halves the shared level, which
    successes raise slowly again. Any other 429, under ``rate_limit``, lowers the shared rate
    to 0.7 times what it was (never below a twentieth of ``rate_limit``) and empties the
    bucket; the rate then grows back linearly to ``rate_limit`` over about ten seconds.

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
        rate_limit: if given, the requests per second the fleet may start, through a shared
            token bucket of ``burst`` tokens. A waiter whose start comes within
            ``poll_interval`` reserves it and holds its slot until then; one cancelled before
            its start gives the start back, unless a later start was granted meanwhile.
        burst: how many requests the bucket lets start at once (its tokens); default a fifth
            of a second of ``rate_limit``, 1 to 4 (4 at 20/s and above). Only with ``rate_limit``.
        lease_seconds: how long the slots of a worker that died stay taken.
        on_redis_error: what to do when Redis fails or does not answer within ``timeout``:
            ``"raise"``: `acquire` raises `~flex_participants.TransportError`; ``"local"``:
            log a warning and limit this process alone with an
            `~flex_participants.AdaptiveLimiter` of ``local_max_concurrency`` (with the same
            ``rate_limit`` and ``burst``), trying Redis again every few seconds.
        local_max_concurrency: the local limit used after a Redis failure with
            ``on_redis_error="local"``; default ``max_concurrency`` (set it to this process's
            share of the budget if the fleet must stay under it even then).
        timeout: seconds any one Redis call may take.
        poll_interval: the longest a waiter waits before asking Redis again.

    Raises:
        InvalidArgumentError: (a `ValueError`) an argument is out of range, or ``burst`` was
            given without ``rate_limit``.
    """

    def __init__(
        self,
        redis: _redis_asyncio.Redis,
        *,
        key: str = "flex_participants",
        max_concurrency: int,
        rate_limit: float | None = None,
        burst: int | None = None,
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
        rate = None if rate_limit is None else check_rate("rate_limit", rate_limit)
        given = check_burst(burst, rate)
        self._burst: int | None = (
            None if rate is None else default_burst(rate) if given is None else given
        )
        self._rate_limit = rate
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
        self._lease = lease
        self._lease_us = max(1, round(lease * _MICROSECONDS))
        self._grace_us = round(max(_WAITER_GRACE_MIN, _WAITER_GRACE_POLLS * self._poll) * 1e6)
        self._horizon_us = round(self._poll * _MICROSECONDS)
        self._on_error = on_redis_error
        self._local = AdaptiveLimiter(local_max, rate_limit=rate, burst=self._burst)
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
        self._rate = rate
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
        rate = "" if self._rate is None else f" rate={self._rate:.4g}/s burst={self._burst}"
        return self._repr(
            f"RedisLimiter{mode} key={self._key!r}", rate, len(self._wakers), f" {self._where}"
        )

    @property
    def key(self) -> str:
        """The name shared by the fleet."""
        return self._key

    @property
    def rate(self) -> float | None:
        """The requests per second the fleet may start, as last seen from Redis (``rate_limit``,
        or less for a while after a 429; ``None`` without ``rate_limit``)."""
        return self._rate

    @property
    def burst(self) -> int | None:
        """How many tokens the fleet's bucket holds (``None`` without ``rate_limit``)."""
        return self._burst

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
                self._take()
                return shared
        permit = _LocalPermit(await self._local.acquire())
        self._take()
        return permit

    async def release(
        self, permit: object, *, throttled: bool, throttle: Throttle | None = None
    ) -> None:
        """Give the slot back and tell the fleet's level, or its rate, about the outcome.

        Args:
            permit: what `acquire` returned.
            throttled: whether the request was answered with 429.
            throttle: what the 429 said. One for requests in flight
                (`~flex_participants.Throttle.concurrency`) halves the shared level; any other,
                under ``rate_limit``, lowers the shared rate and empties the bucket (without
                ``rate_limit``, it halves the level).

        A release never raises for Redis: if Redis cannot be reached, the lease runs out on its
        own within ``lease_seconds`` (a warning is logged, and the next `acquire` deals with
        the failure as ``on_redis_error`` says). Nor is it cut short: cancelled while Redis is
        slow, it still tells Redis (within ``timeout``), then raises the cancellation.

        Raises:
            InvalidArgumentError: ``permit`` did not come from this limiter's `acquire`.
            Exception: whatever unexpected error stopped the renewal of this limiter's leases
                (a bug: Redis failures there are logged and retried), after the slot is given
                back.
        """
        if isinstance(permit, _LocalPermit):
            self._in_flight -= 1
            await self._local.release(permit.inner, throttled=throttled, throttle=throttle)
            return
        if not isinstance(permit, _RedisPermit):
            raise InvalidArgumentError(f"not a permit of this limiter: {permit!r}")
        self._in_flight -= 1
        if throttled:
            self.throttled += 1
        self._held.pop(permit.id, None)
        # To its end, even if the caller is cancelled meanwhile (a close(), a deadline): a
        # slot not given back would be lost to the whole fleet until its lease ran out.
        await uninterrupted(
            self._release_shared(permit, throttled, throttle), f"give a slot back to {self._where}"
        )
        self._raise_renewal_failure()

    async def _release_shared(
        self, permit: _RedisPermit, throttled: bool, throttle: Throttle | None
    ) -> None:
        try:
            reply = await self._call(
                self._release_script,
                [self._leases, self._state],
                [
                    permit.id,
                    int(throttled),
                    permit.generation,
                    permit.rate_generation,
                    int(throttle is not None and throttle.concurrency),
                    self._max,
                    _GROWTH,
                    _IDLE_SECONDS * _MICROSECONDS,
                    *self._bucket_args(),
                    _RATE_CUT,
                    _MIN_RATE_SHARE,
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
            self._seen_rate(reply[2])
        finally:
            self._wake_first()
            await self._stop_renewal_if_idle()

    # -- reading the shared state -----------------------------------------------------------

    async def read_state(self) -> RedisLimitState:
        """Read the shared level, rate and counters of this limiter's key from Redis.

        Raises:
            TransportError: Redis failed or did not answer within ``timeout``.
        """
        try:
            reply = await self._call(
                self._read_script,
                [self._leases, self._queue, self._state],
                [self._max, self._rate_limit or 0, _recovery_us()],
            )
        except _RedisUnavailableError as failure:
            raise self._error(failure) from failure.__cause__
        level, in_flight, waiting, throttled, peak, generation, rate = reply
        self._level = float(_text(level))
        self._seen_rate(rate)
        return RedisLimitState(
            level=self.level,
            in_flight=int(in_flight),
            waiting=int(waiting),
            throttled=int(throttled),
            peak_in_flight=int(peak),
            generation=int(generation),
            rate=self._rate,
        )

    # -- inside -----------------------------------------------------------------------------

    async def _acquire_shared(self) -> _RedisPermit:
        permit_id = uuid.uuid4().hex
        try:
            generation, rate_generation, start_in = await self._wait_for_grant(permit_id)
            permit = _RedisPermit(permit_id, generation, rate_generation)
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

    async def _wait_for_grant(self, permit_id: str) -> tuple[int, int, float]:
        """Ask Redis until it grants a slot; return its generations and seconds to its start."""
        loop = asyncio.get_running_loop()
        delay = _FIRST_POLL
        self._wakers[permit_id] = loop.create_future()
        try:
            while True:
                reply = await self._call(
                    self._acquire_script,
                    [self._leases, self._queue, self._alive, self._seq, self._state],
                    [
                        permit_id,
                        self._max,
                        self._lease_us,
                        self._grace_us,
                        self._horizon_us,
                        _IDLE_SECONDS * _MICROSECONDS,
                        *self._bucket_args(),
                    ],
                )
                granted, generation, rate_generation, level, rate, _in, _ahead, wait_us = reply
                self._level = float(_text(level))
                self._seen_rate(rate)
                wait = float(_text(wait_us)) / _MICROSECONDS
                if int(granted):
                    return int(generation), int(rate_generation), wait
                if wait > 0:
                    # Next in line, but the bucket says not yet; keep asking well within
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
        with contextlib.suppress(_RedisUnavailableError):
            # If this fails, the waiter's grace period, or the lease, runs out on its own. A
            # cancellation landing meanwhile does not cut it short (see release).
            await uninterrupted(
                self._call(
                    self._forget_script,
                    [self._leases, self._queue, self._alive, self._state],
                    [permit_id],
                ),
                f"give a slot back to {self._where}",
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

    def _bucket_args(self) -> tuple[float, int, int]:
        """``rate_limit`` (0 for none), ``burst`` and the rate's recovery time, for the scripts."""
        return self._rate_limit or 0.0, self._burst or 1, _recovery_us()

    def _seen_rate(self, rate: object) -> None:
        if self._rate_limit is not None:
            self._rate = float(_text(rate))

    def _wake_first(self) -> None:
        for waiter in self._wakers.values():
            if not waiter.done():
                waiter.set_result(None)
                return
