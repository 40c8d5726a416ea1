"""How many requests a client lets into flight, and how fast: the in-process adaptive limiter.

Every request a client sends, from every stream, prefetch and batch, first takes a slot here
and gives it back when its response has been read. A retry gives its slot back before it
sleeps, so waiting never blocks anyone else.

The number of slots adapts (additive increase, multiplicative decrease): a 429 halves it, once
per burst of 429s, and every success while the window is full adds ``0.5 / level``, about one
slot every two rounds of requests, never above ``max_concurrency``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from typing import Protocol, runtime_checkable

from ._arguments import check_count, check_quantity

__all__ = ["AdaptiveLimiter", "Limiter"]

_GROWTH = 0.5


@runtime_checkable
class Limiter(Protocol):
    """What a client needs from a limiter: a slot for each request, and news of 429s."""

    async def acquire(self) -> object:
        """Wait for a slot for one request; return a permit to hand back to `release`."""
        ...

    async def release(self, permit: object, *, throttled: bool) -> None:
        """Give a slot back; ``throttled`` says whether the request was answered with 429."""
        ...


class AdaptiveLimiter:
    """The default `Limiter`: slots shared in one process, adapting to 429s, optionally paced.

    Args:
        max_concurrency: the most requests in flight, whatever happens.
        rate_limit: if given, the most requests started per second.

    Raises:
        InvalidArgumentError: (a `ValueError`) ``max_concurrency`` is not an integer >= 1, or
            ``rate_limit`` is not a finite number > 0.
    """

    def __init__(self, max_concurrency: int, *, rate_limit: float | None = None) -> None:
        self._max = check_count("max_concurrency", max_concurrency, minimum=1)
        self._pacer = (
            None
            if rate_limit is None
            else _Pacer(
                check_quantity("rate_limit", rate_limit, strict=True, unit="requests per second")
            )
        )
        self._level = float(max_concurrency)
        self._generation = 0
        self._in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.peak_in_flight = 0
        """The most requests that were in flight at once."""
        self.throttled = 0
        """How many responses were 429s."""

    def __repr__(self) -> str:
        return (
            f"<AdaptiveLimiter level={self.level}/{self._max} in_flight={self._in_flight}"
            f" waiting={len(self._waiters)}>"
        )

    @property
    def max_concurrency(self) -> int:
        """The ceiling of `level`."""
        return self._max

    @property
    def level(self) -> int:
        """How many requests may be in flight now (1 to `max_concurrency`)."""
        return max(1, math.floor(self._level))

    @property
    def in_flight(self) -> int:
        """How many requests are in flight now."""
        return self._in_flight

    async def acquire(self) -> object:
        """Wait for pacing and for a free slot, in arrival order; return the permit."""
        start = await self._pacer.wait() if self._pacer is not None else 0
        if self._in_flight < self.level and not self._waiters:
            self._take()
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    # The slot was handed over just as we were cancelled: pass it on.
                    self._in_flight -= 1
                    self._wake()
                if self._pacer is not None:
                    self._pacer.refund(start)  # the paced start went unused
                raise
            finally:
                if not waiter.done() or waiter.cancelled():
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
        return self._generation

    async def release(self, permit: object, *, throttled: bool) -> None:
        """Free the slot and adapt the level to the outcome."""
        self._in_flight -= 1
        if throttled:
            self.throttled += 1
            # One decrease per burst: the 429s of requests sent before the last
            # decrease were caused by the old level and are already accounted for.
            if permit == self._generation:
                self._level = max(1.0, self._level / 2)
                self._generation += 1
        elif self._in_flight + 1 >= self.level:
            # Grow only while the window is in use, by about one slot every two rounds of
            # requests: slow enough that 429s stay rare once the level sits near the
            # server's limit, and a window nobody fills does not drift up unchecked.
            self._level = min(float(self._max), self._level + _GROWTH / self._level)
        self._wake()

    def _take(self) -> None:
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self.level:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)


class _Pacer:
    """Lets requests start at most ``rate`` times a second, in arrival order.

    The schedule depends only on the starts that are used: a waiter that is cancelled leaves
    the queue and reserves nothing, and a start given to a caller that then gives up (it was
    cancelled as the start came, or while it waited for a slot after it) is handed back with
    `refund`, so callers that give up never push out the starts of those behind them.
    """

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = -math.inf  # the loop time from which the next start is allowed
        self._starts = 0  # how many starts were given; the last one can be handed back
        self._last_start = -math.inf  # when the last start was due
        self._waiters: collections.deque[asyncio.Future[int]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    async def wait(self) -> int:
        """Return when this caller may start its request, with a token for `refund`."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self._waiters and now >= self._next:
            return self._start(now, now)
        waiter: asyncio.Future[int] = loop.create_future()
        self._waiters.append(waiter)
        self._arm(loop)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.refund(waiter.result())  # given the start just as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                if not self._waiters and self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            raise

    def refund(self, token: int) -> None:
        """Hand back a start that was not used, if no later start has been given since."""
        if token != self._starts:
            return  # the schedule has moved on past it: nothing to give back
        self._starts += 1  # a second refund of the same token does nothing
        self._next = self._last_start
        if self._waiters:
            self._grant(asyncio.get_running_loop())

    def _start(self, due: float, now: float) -> int:
        self._starts += 1
        self._last_start = due
        # On schedule, not from the moment the timer ran, so that a late timer does not
        # slow the rate; but no catching up on time nobody was waiting for.
        self._next = max(due + self._interval, now)
        return self._starts

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and self._waiters:
            self._timer = loop.call_at(self._next, self._grant, loop)

    def _grant(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = loop.time()
        if now < self._next:  # the timer ran a little early (clock granularity)
            self._arm(loop)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._start(self._next, now))
                break
        self._arm(loop)
