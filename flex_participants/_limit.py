"""How many requests a client lets into flight, and how fast: the in-process adaptive limiter.

Every request a client sends, from every stream, prefetch and batch, first takes a slot here
and gives it back when its response has been read; with a rate, it then waits for a token of
the rate's bucket before it starts. A retry gives its slot back before it sleeps, so waiting
never blocks anyone else.

Two things adapt, each to the 429 that names it:

* The number of slots (additive increase, multiplicative decrease): a 429 for requests in
  flight (Flex's code 45780, or any 429 when there is no rate) halves it, once per burst of
  429s, and every success while the window is full adds ``0.5 / level``, about one slot every
  two rounds of requests, never above ``max_concurrency``. With a rate, the slots in use are
  also never more than the rate needs at the answer time measured (rate x latency, Little's
  law, with room): that many, below the ceiling, is what lets the rate be reached at any
  answer time.
* The rate, a token bucket (see `_RateControl` for the rule): an unknown budget is sought
  from the documented one, doubling while nothing is refused; any other 429 lowers the rate
  to what the server was seen to accept (`_Evidence`) and empties the bucket (and halves its
  burst for good, if the request started as part of a burst: sooner after another than the
  rate alone allows); while requests queue for tokens the rate is held, then probed back up,
  slowly, never above a rate the caller gave.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import math
from collections.abc import Callable, Iterator
from typing import Final, Literal, Protocol, runtime_checkable

import attrs

from ._arguments import check_burst, check_count, check_rate
from ._errors import FlexError, InvalidArgumentError

__all__ = [
    "DOCUMENTED_RATE",
    "FIXED_CONCURRENCY",
    "MAX_CONCURRENCY",
    "AdaptiveLimiter",
    "Limiter",
    "RateLimit",
    "SlotWindow",
    "Throttle",
    "check_rate_limit",
    "default_burst",
    "limiter_errors",
    "takes_throttle",
]

MAX_CONCURRENCY: Final = 500
"""The default ceiling of the requests a client with a rate has in flight: 200 requests/s at
2 s answers, with a quarter more for the answers that take longer. It protects the process
(its sockets) and the server; the slots in use follow the rate and the answer time below it."""

FIXED_CONCURRENCY: Final = 10
"""The requests a client has in flight at once when no rate says how many it needs."""

DOCUMENTED_RATE: Final = 20.0
"""Requests per second per endpoint per account: the Interactions API's documented budget."""

MAX_BURST: Final = math.floor(DOCUMENTED_RATE / 5)
"""The largest default burst: a fifth of a second of the documented budget (4)."""

CONCURRENCY_CODE: Final = 45780
"""Flex's code for a 429 that refuses a request for too many concurrent requests."""

RateLimit = float | Literal["adaptive"] | None
"""A rate limit as callers give it: requests per second, ``"adaptive"``, or ``None`` for none."""

_GROWTH: Final = 0.5
# The slots a rate needs: its rate x the answer time (Little's law), with this much room, plus
# its burst; before the first answer, the answer time is taken to be `_LATENCY_GUESS`, the
# longest that the default ceiling is sized for, so that a client never starts short of slots.
_ROOM: Final = 1.25
_LATENCY_GUESS: Final = 2.0
_LATENCY_WEIGHT: Final = 0.2  # of each new answer time in the moving average


def default_burst(rate: float) -> int:
    """The burst used when none is given: a fifth of a second of requests, 1 to `MAX_BURST`.

    Twilio does not publish the burst it allows; a fifth of a second of the budget stays
    under what a token bucket of that rate usually holds, so that a client starting with a
    full bucket provokes no 429. A budget above the documented one need not come with a
    larger bucket, so the burst stops at the documented budget's: a burst of 20 at 100/s
    against a bucket of 5 would be answered with 15 429s.
    """
    return max(1, min(MAX_BURST, math.floor(rate / 5)))


@attrs.frozen
class Throttle:
    """What a 429 said, for a limiter to adapt to.

    Attributes:
        code: Twilio's error code from the body: 20429 (too many requests: the rate), 45780
            (too many concurrent requests), or ``None`` if the body had none.
        retry_after: the seconds ``Retry-After`` asked for, if the server sent it.
        concurrent_requests: the ``Twilio-Concurrent-Requests`` header, if the server sent it:
            how many requests of the account the server counted in flight.
    """

    code: int | None = None
    retry_after: float | None = None
    concurrent_requests: int | None = None

    @property
    def concurrency(self) -> bool:
        """Whether the 429 was for requests in flight (code 45780), not for their rate."""
        return self.code == CONCURRENCY_CODE


@runtime_checkable
class Limiter(Protocol):
    """What a client needs from a limiter: a slot for each request, and news of 429s."""

    async def acquire(self) -> object:
        """Wait for a slot for one request; return a permit to hand back to `release`."""
        ...

    async def release(self, permit: object, *, throttled: bool) -> None:
        """Give a slot back; ``throttled`` says whether the request was answered with 429.

        The client awaits it to its end, even when ``close()``, a deadline or a cancellation
        lands during it (the cancellation goes on afterwards): keep it bounded in time.

        A limiter whose ``release`` also takes a keyword ``throttle`` gets, with each 429,
        a `Throttle` saying what the server said (its code, ``Retry-After`` and
        ``Twilio-Concurrent-Requests``), so that it can tell a rate limit from a
        concurrency limit.
        """
        ...


def check_rate_limit(rate_limit: object, burst: object) -> tuple[RateLimit, int | None]:
    """Validate a ``rate_limit`` and ``burst`` pair as the client and the limiters take it.

    Raises:
        InvalidArgumentError: ``rate_limit`` is not ``None``, ``"adaptive"`` or a finite
            number > 0; ``burst`` is not an integer >= 1, or is given without a rate.
    """
    if rate_limit is None or rate_limit == "adaptive":
        rate: RateLimit = None if rate_limit is None else "adaptive"
    elif isinstance(rate_limit, str):
        raise InvalidArgumentError(
            "rate_limit must be a finite number of requests per second > 0 or "
            f'"adaptive" (or None for no rate), got {rate_limit!r}'
        )
    else:
        rate = check_rate("rate_limit", rate_limit)
    return rate, check_burst(burst, rate)


class SlotWindow:
    """The window of slots of a limiter, as both limiters show it: the level (a float, so that
    successes raise it by fractions of a slot), its ceiling and the permits out now."""

    _max: int
    _level: float
    _in_flight: int
    peak_in_flight: int

    @property
    def max_concurrency(self) -> int:
        """The ceiling of `level`."""
        return self._max

    @property
    def level(self) -> int:
        """How many requests may be in flight now, 1 to `max_concurrency` (for a limiter shared
        through Redis: across the fleet, as last seen from Redis)."""
        return max(1, math.floor(self._level))

    def _take(self) -> None:
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)

    def _repr(self, head: str, rate: str, waiting: int, tail: str = "") -> str:
        return (
            f"<{head} level={self.level}/{self._max}{rate} in_flight={self._in_flight}"
            f" waiting={waiting}{tail}>"
        )


@attrs.frozen
class _Start:
    """A start the rate's bucket gave: its place in the bucket's schedule, for `_Bucket.sent`
    and `_Bucket.refund` (which knows it by identity)."""

    at: float  # the loop's time when the bucket gave it
    anchor: float  # the bucket's `_tat` just before it
    shifted: float  # the bucket's `_shifted` then


@attrs.frozen
class _Permit:
    """What `AdaptiveLimiter.acquire` hands out: the generations it was granted in, and the
    rate it started under, so that a 429 to it is counted once and against the right rate."""

    level_generation: int
    rate_generation: int
    rate: float | None
    from_burst: bool = False  # whether it started sooner after another than the rate allows
    started: float = 0.0  # the loop's time when it was let start
    start: _Start | None = None  # what the rate's bucket gave, for `_Bucket.sent`


class AdaptiveLimiter(SlotWindow):
    """The default `Limiter`: slots shared in one process, a rate, both adapting to 429s.

    Args:
        max_concurrency: the most requests in flight, whatever happens.
        rate_limit: ``None`` (the default here): no rate. A number: the most requests
            started per second, a token bucket holding ``burst`` starts; 429s lower the rate
            below it for a while, never raise it above. ``"adaptive"``: the rate is not
            known; it starts at Twilio's documented budget (20 per second), is raised
            while requests queue for it and none is refused, lowered by 429s to what the
            server was seen to accept, and probed back up, with no ceiling.
        burst: how many starts the bucket holds: how many may start at once after a pause.
            Default: a fifth of a second of the rate, 1 to 4 (4 at 20 per second and above).

    Raises:
        InvalidArgumentError: (a `ValueError`) ``max_concurrency`` is not an integer >= 1,
            ``rate_limit`` is neither a finite number > 0, ``"adaptive"`` nor ``None``, or
            ``burst`` is not an integer >= 1 or is given without a rate.
    """

    def __init__(
        self,
        max_concurrency: int,
        *,
        rate_limit: float | Literal["adaptive"] | None = None,
        burst: int | None = None,
    ) -> None:
        self._max = check_count("max_concurrency", max_concurrency, minimum=1)
        rate_limit, burst = check_rate_limit(rate_limit, burst)
        self._control: _RateControl | None = None
        self._bucket: _Bucket | None = None
        if rate_limit is not None:
            start = DOCUMENTED_RATE if rate_limit == "adaptive" else rate_limit
            ceiling = None if rate_limit == "adaptive" else rate_limit
            self._control = _RateControl(start, ceiling)
            self._bucket = _Bucket(self._control, default_burst(start) if burst is None else burst)
        self._level = float(max_concurrency)
        self._generation = 0
        self._in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._latency: float | None = None  # how long answers take: a moving average
        self._evidence = _Evidence()
        self.peak_in_flight = 0
        """The most requests that were in flight at once."""
        self.throttled = 0
        """How many responses were 429s."""

    def __repr__(self) -> str:
        rate = "" if self._bucket is None else f" rate={self._bucket.rate:.4g}/s"
        return self._repr("AdaptiveLimiter", rate, len(self._waiters))

    @property
    def in_flight(self) -> int:
        """How many requests hold a slot now (those waiting for a token of the rate included)."""
        return self._in_flight

    @property
    def level(self) -> int:
        """How many requests may be in flight now, 1 to `max_concurrency`: with a rate, what
        the rate needs at the answer time measured (rate x latency, Little's law, with room
        for the burst), and never more than 429s for requests in flight have left."""
        return max(1, math.floor(min(self._level, self._needed())))

    @property
    def latency(self) -> float | None:
        """The seconds answers take, as a moving average; ``None`` before the first answer,
        and without a rate, for which it is not measured."""
        return self._latency

    def _needed(self) -> float:
        bucket = self._bucket
        if bucket is None:
            return math.inf
        latency = _LATENCY_GUESS if self._latency is None else self._latency
        return bucket.rate * latency * _ROOM + bucket.burst + 1

    @property
    def rate(self) -> float | None:
        """The requests per second allowed now, or ``None`` without a rate."""
        return None if self._bucket is None else self._bucket.rate

    @property
    def burst(self) -> int | None:
        """How many starts the rate's bucket holds, or ``None`` without a rate."""
        return None if self._bucket is None else self._bucket.burst

    async def acquire(self) -> object:
        """Wait for a free slot, then for a token of the rate, in arrival order both times;
        return the permit.

        The slot comes first, so that a request starts the moment its token comes: a token
        taken before a wait for a slot would let starts bunch up after it.
        """
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
                raise
            finally:
                if not waiter.done() or waiter.cancelled():
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
        bucket, control = self._bucket, self._control
        if bucket is None or control is None:
            return _Permit(self._generation, 0, None)
        try:
            from_burst, start = await bucket.wait()
        except BaseException:
            self._in_flight -= 1
            self._wake()
            raise
        started = asyncio.get_running_loop().time()
        return _Permit(
            self._generation, control.generation, bucket.rate, from_burst, started, start
        )

    def _send_clock(self, permit: object) -> Callable[[float], None] | None:
        """What to call, with the loop's time, each time the request of ``permit`` goes out
        (aiohttp sends a request again, once, when a kept-alive connection turns out to be
        closed): the bucket's schedule then follows the server's (see `_Bucket.sent`).
        ``None`` without a rate."""
        bucket = self._bucket
        if bucket is None or not isinstance(permit, _Permit) or permit.start is None:
            return None
        start = permit.start
        applied = 0.0

        def sent(at: float) -> None:
            nonlocal applied
            applied = bucket.sent(start, at, applied)

        return sent

    async def release(
        self, permit: object, *, throttled: bool, throttle: Throttle | None = None
    ) -> None:
        """Free the slot and adapt to the outcome.

        Args:
            permit: what `acquire` returned.
            throttled: whether the response was a 429.
            throttle: what the 429 said: one for requests in flight (45780) lowers the
                number of slots; any other lowers the rate, if there is one.
        """
        self._release_now(permit, throttled=throttled, throttle=throttle)

    def _release_now(
        self,
        permit: object,
        *,
        throttled: bool,
        throttle: Throttle | None = None,
        answered: bool = True,
    ) -> None:
        # `release` without a suspension point, so that nothing can cut it short: the
        # client's own limiter is given its slots back this way, with no task of its own.
        # ``answered``: whether the server answered at all (not a timeout, a broken
        # connection or a cancellation), which only the client knows.
        self._in_flight -= 1
        known = permit if isinstance(permit, _Permit) else None
        concurrency = throttle is not None and throttle.concurrency
        if known is not None and known.rate is not None and answered:
            self._measure(known)
            if not concurrency:  # a 45780 says nothing of the rate, and takes no token
                self._evidence.record(known.started, known.rate, accepted=not throttled)
        if throttled:
            self.throttled += 1
            for_slots = self._control is None or (throttle is not None and throttle.concurrency)
            if for_slots:
                # One decrease per burst: the 429s of requests sent before the last
                # decrease were caused by the old level and are already accounted for.
                if known is not None and known.level_generation == self._generation:
                    self._level = max(1.0, min(self._level, self._needed()) / 2)
                    self._generation += 1
            elif known is not None and known.rate is not None:
                self._lower_rate(known)
        elif self._in_flight + 1 >= self.level and self._level <= self._needed():
            # Grow only while the window is in use and is what limits it, by about one slot
            # every two rounds of requests: slow enough that 429s stay rare once the level
            # sits near the server's limit, and a window nobody fills does not drift up.
            self._level = min(float(self._max), self._level + _GROWTH / self._level)
        self._wake()

    def _measure(self, permit: _Permit) -> None:
        """Take in how long the answer to ``permit`` took."""
        took = max(0.0, asyncio.get_running_loop().time() - permit.started)
        old = self._latency
        self._latency = took if old is None else old + _LATENCY_WEIGHT * (took - old)
        if self._control is not None:
            self._control.latency = self._latency

    def _refine(self) -> None:
        """After a decrease, the 429s to requests started before it still come in: when
        what the answers show the server accepted is well below the new rate, go down to
        it (as a decrease does, never below a tenth of the rate)."""
        bucket, control = self._bucket, self._control
        if bucket is None or control is None:
            return
        delivered = self._evidence.delivered(self._latency or 0.0)
        if delivered is not None and delivered < control.rate * _NEAR_DECREASE:
            now = asyncio.get_running_loop().time()
            control.lower_to(max(delivered, control.rate * _LEAST_SHARE), bucket.saturated(now))
            bucket.set_rate(control.rate, now)

    def _lower_rate(self, permit: _Permit) -> None:
        bucket, control = self._bucket, self._control
        if bucket is None or control is None or permit.rate is None:
            return
        if permit.rate_generation != control.generation:
            self._refine()  # caused by an older rate, and already answered for
            return
        now = asyncio.get_running_loop().time()
        accepted = self._evidence.accepted(permit.started, self._latency or 0.0)
        if control.throttled(
            permit.rate_generation, permit.rate, bucket.saturated(now), accepted=accepted
        ):
            if permit.from_burst:
                # It started sooner after another than the rate allows, on the burst: the
                # server's bucket is smaller than ours. It stays smaller: no regrowth.
                bucket.burst = max(1, bucket.burst // 2)
            # The server's bucket is empty now: so is ours, so that no burst follows.
            bucket.set_rate(control.rate, now, empty=True)

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self.level:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)


# How the rate adapts. The times are seconds during which requests queued for tokens: the
# rate is the limit then. While nobody waits, nothing is learnt and nothing changes.
_PROVEN: Final = 2.0  # a rate used this long with no 429 is one the server sustains
# While an unknown budget is sought (until its first 429), the rate doubles every this many
# answer times of queueing: TCP's slow start, on the rate, slowed down so that the server's
# own burst, which hides an excess until it is spent, lets through little more.
_SEARCH_DOUBLING: Final = 3.5
_FASTEST_DOUBLING: Final = 0.1  # seconds: however fast the answers, no faster than this
_MOST_RATE: Final = 10_000.0  # an unknown budget is never taken to be above this
_NEAR_DECREASE: Final = 0.95  # a proven rate that is then refused was close: 5% less
_FIRST_DECREASE: Final = 0.5  # with nothing proven and no evidence, a 429 halves the rate
_LEAST_SHARE: Final = 0.1  # a decrease to the evidence keeps at least this much of the rate
_MIN_RATE: Final = 0.5
# After a decrease, the rate is held this long, then grows as base * (1 + (t / probe) ** 3):
# +1% after a fifth of `probe`, x2 after `probe`. After a blind halving the budget lies
# between the two rates: it is sought sooner.
_HOLD: Final = 2.0
_PROBE: Final = 8.0
_BLIND_HOLD: Final = 2.0
_BLIND_PROBE: Final = 5.0
# Below a rate the caller gave, the budget is taken to come back: the rate is held briefly,
# then climbs back to the told rate on a cubic that reaches it after `_TOLD_PROBE` seconds.
_TOLD_HOLD: Final = 0.5
_TOLD_PROBE: Final = 2.0


class _RateControl:
    """The rule by which the rate follows 429s.

    * An unknown budget (no ceiling) is sought first, from the start rate: the rate doubles
      every `_SEARCH_DOUBLING` answer times of queueing, until the first 429.
    * A 429 to a request started at rate ``w`` lowers the rate once per burst (a 429 to a
      request started before the last decrease was caused by the old rate). It goes to the
      highest rate *proven* below ``w`` (used for `_PROVEN` seconds of queueing with no 429
      after it); if ``w`` was itself proven (the server's budget shrank, or another client
      now shares it), to 95% of ``w``; with nothing proven, to ``accepted``, the rate the
      server was seen to accept (see `_Evidence`), never more than 95% of ``w`` nor less
      than a tenth. With no evidence, a 429 halves the rate, or takes 5% off once the
      budget is known roughly (evidence sized a decrease, or the caller gave the rate).
      A 429 never raises the rate; `lower_to` lowers it further on later evidence.
    * The new rate is held for a few seconds of queueing, then grows as a cubic of the
      queueing time since (flat at first, so that it lingers near the rate that worked).
    * A rate the caller gave (``ceiling``) counts as proven from the start: a 429 to it
      (another application spends the budget too, or the network bunched requests up)
      takes 5% off. Below it, the rate is held half a second, then climbs back to it within
      `_TOLD_PROBE` seconds, never above it: the budget the caller knows is taken to come
      back.

    botocore's adaptive mode goes back to 70% of the measured rate on every throttle and
    climbs back on a cubic centred on the rate that failed, so that it meets the limit again
    within seconds; this rule spends the 429s it needs to find the budget once, then stays
    just under it.
    """

    def __init__(self, start: float, ceiling: float | None) -> None:
        self._ceiling = math.inf if ceiling is None else ceiling
        self._base = start  # the rate set by the last decrease (or the start)
        self._since = 0.0  # queueing seconds when it was set
        self._hold, self._probe = _HOLD, _PROBE
        self._proven: float | None = None if ceiling is None else start
        self._searching = ceiling is None
        self._informed = ceiling is not None  # whether the budget is known, at least roughly
        self.latency: float | None = None
        """How long answers take, as the limiter measures them; the search waits for it."""
        self.rate = start
        self.generation = 0

    @property
    def searching(self) -> bool:
        """Whether an unknown budget is still sought: no 429 has come yet."""
        return self._searching

    def rate_at(self, saturated: float) -> float:
        """The rate after ``saturated`` seconds of queueing in all; also proves older rates."""
        elapsed = saturated - self._since
        if self._searching:
            if self.latency is not None and elapsed > 0:
                doubling = max(_FASTEST_DOUBLING, _SEARCH_DOUBLING * self.latency)
                growth = 2 ** min(elapsed / doubling, math.log2(_MOST_RATE))
                self.rate = self._base = min(_MOST_RATE, self.rate * growth)
            self._since = saturated
            return self.rate
        self.rate = self._curve(elapsed)
        if elapsed >= _PROVEN:
            self._prove(self._curve(elapsed - _PROVEN))
        return self.rate

    def throttled(
        self, generation: int, started_at: float, saturated: float, accepted: float | None = None
    ) -> bool:
        """Take in a 429 to a request started at rate ``started_at`` (in generation
        ``generation`` of the rate), after ``saturated`` seconds of queueing; ``accepted`` is
        the rate the server was seen to accept, if answers say. Return whether the rate
        fell."""
        self.rate_at(saturated)
        if generation != self.generation:
            return False
        proven = self._proven
        told = math.isfinite(self._ceiling)
        self._hold, self._probe = (_TOLD_HOLD, _TOLD_PROBE) if told else (_HOLD, _PROBE)
        evidence = (
            None
            if accepted is None
            else min(started_at * _NEAR_DECREASE, max(started_at * _LEAST_SHARE, accepted))
        )
        if proven is not None and proven < started_at:
            rate = proven if evidence is None else max(proven, evidence)
        elif proven is not None:
            rate = started_at * _NEAR_DECREASE
            self._proven = None
        elif evidence is not None:
            rate = evidence
            self._informed = True
        elif self._informed:
            rate = started_at * _NEAR_DECREASE
        else:
            rate = started_at * _FIRST_DECREASE
            if not told:
                self._hold, self._probe = _BLIND_HOLD, _BLIND_PROBE
        self._searching = False
        self._set(min(rate, self.rate), saturated)  # a 429 never raises the rate
        self.generation += 1
        return True

    def lower_to(self, rate: float, saturated: float) -> None:
        """Lower the rate to ``rate``, what the server was seen to accept, if it is lower:
        a decrease of its own, so that the 429s to requests started before it count no
        more, and a proven rate above it is proven no more."""
        self.rate_at(saturated)
        if rate < self.rate:
            self._set(rate, saturated)
            if self._proven is not None and self._proven > self.rate:
                self._proven = None
            self.generation += 1

    def _set(self, rate: float, saturated: float) -> None:
        # Never above a rate the caller gave, even one below the floor.
        self.rate = self._base = max(min(_MIN_RATE, self._ceiling), min(rate, self._ceiling))
        self._since = saturated

    def _curve(self, elapsed: float) -> float:
        growth = min(_MOST_RATE, (max(0.0, elapsed - self._hold) / self._probe) ** 3)
        if math.isfinite(self._ceiling):
            return min(self._ceiling, self._base + (self._ceiling - self._base) * growth)
        return min(_MOST_RATE, self._base * (1 + growth))

    def _prove(self, rate: float) -> None:
        if self._proven is None or rate > self._proven:
            self._proven = rate


# What answers show the server accepted. A 429's answer comes an answer time after its
# request: these are kept so that a decrease can be sized on what the server did.
_EVIDENCE_KEPT: Final = 1024  # answers
_EVIDENCE_SAMPLES: Final = 4  # the fewest answers an estimate is made from
_EVIDENCE_HORIZON: Final = 4.0  # answer times (plus a second) back from the latest start
_EVIDENCE_PAUSE: Final = 0.5  # seconds without a start after which the server's bucket may
# have refilled


class _Evidence:
    """The latest answers to requests of a rate: when each started, at what rate, and
    whether the server accepted it (any answer but a rate 429).

    Two estimates of the rate the server accepts, Google SRE's accepts over requests and
    TCP BBR's delivery rate, each ``None`` while too few answers say:

    * `accepted`: the share of the answers started within an answer time before a refused
      request that were accepted, times the mean rate they started at: quick to say, biased
      upwards while the rate was climbing.
    * `delivered`: between two refused starts with no pause between them, the server's
      bucket was empty at both, so every token it made went to a request it accepted: the
      accepted starts over the time between is the server's rate for this client, whatever
      this client sent, to a token. A bucket too small to hold what it makes between two
      starts spills some: then it is less. It needs two refusals and a few acceptances
      between them.
    """

    def __init__(self) -> None:
        self._answers: collections.deque[tuple[float, float, bool]] = collections.deque(
            maxlen=_EVIDENCE_KEPT
        )

    def record(self, started: float, rate: float, *, accepted: bool) -> None:
        """Take in the answer to a request started at ``started``, at rate ``rate``."""
        self._answers.append((started, rate, accepted))

    def accepted(self, started: float, latency: float) -> float | None:
        """The rate the server accepted around ``started``, the start of a refused request:
        the delivery rate if enough answers say, else the accepted share times the rate."""
        delivered = self.delivered(latency)
        if delivered is not None:
            return delivered
        since = started - latency
        recent = [(rate, ok) for begun, rate, ok in self._answers if since <= begun <= started]
        if len(recent) < _EVIDENCE_SAMPLES:
            return None
        share = sum(ok for _, ok in recent) / len(recent)
        return share * sum(rate for rate, _ in recent) / len(recent)

    def delivered(self, latency: float) -> float | None:
        """The rate the server accepted between the last refused starts, or ``None``."""
        # Answers are taken to come back in about the order their requests started: a
        # server that answers 429s much sooner than pages makes this an underestimate
        # for an answer time (the acceptances started before a refusal not all in yet).
        if not self._answers:
            return None
        latest = max(begun for begun, _, _ in self._answers)
        horizon = latest - _EVIDENCE_HORIZON * latency - 1.0
        starts = sorted((begun, ok) for begun, _, ok in self._answers if begun >= horizon)
        refused = [i for i, (_, ok) in enumerate(starts) if not ok]
        if len(refused) < 2:
            return None
        end = first = refused[-1]
        for i in range(end, 0, -1):  # back over starts with no pause between them
            if starts[i][0] - starts[i - 1][0] > _EVIDENCE_PAUSE:
                break
            if not starts[i - 1][1]:
                first = i - 1
        accepted = sum(ok for _, ok in starts[first:end])
        span = starts[end][0] - starts[first][0]
        if accepted < _EVIDENCE_SAMPLES or span <= 0:
            return None
        return accepted / span


class _Bucket:
    """A token bucket of starts, served in arrival order: GCRA, with a timer for the queue.

    ``_tat`` (the theoretical arrival time) is when the bucket will be full again in the
    past's terms: a start at ``now`` conforms if ``now >= _tat - (burst - 1) * interval``, and
    moves ``_tat`` on by one interval. The schedule depends only on the starts that are
    used: a waiter that is cancelled leaves the queue and takes nothing, and a start given
    to a caller that then gives up is handed back with `refund`.

    It also counts the time during which someone waited for a token: the rate is the limit
    then, and only then does `_RateControl` learn anything.
    """

    def __init__(self, control: _RateControl, burst: int) -> None:
        self._control = control
        rate = control.rate
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        self._tat = -math.inf
        self._refundable: _Start | None = None  # the last start, while it can be handed back
        self._last_start = -math.inf
        self._waiters: collections.deque[asyncio.Future[_Start]] = collections.deque()
        self._shifted = 0.0  # seconds by which `sent` has moved the schedule on, in all
        self._timer: asyncio.TimerHandle | None = None
        self._saturated = 0.0  # seconds during which someone waited, until `_counted`
        self._counted = -math.inf

    def saturated(self, now: float) -> float:
        """Seconds, in all, during which a caller waited for a token."""
        if self._waiters and now > self._counted:
            self._saturated += now - self._counted
        self._counted = now
        return self._saturated

    def set_rate(self, rate: float, now: float, *, empty: bool = False) -> None:
        """Change the rate; the starts owed keep their number. ``empty``: no burst is left."""
        self._retune(rate, now)
        if empty:
            # The next start conforms one interval from now.
            self._tat = max(self._tat, now + self._tolerance() + self._interval)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._arm(asyncio.get_running_loop())

    def _retune(self, rate: float, now: float) -> None:
        if rate != self.rate:
            owed = max(0.0, self._tat - now) / self._interval
            self.rate = rate
            self._interval = 1.0 / rate
            self._tat = now + owed * self._interval
            self._refundable = None  # no refund across a change of rate

    async def wait(self) -> tuple[bool, _Start]:
        """Return when this caller may start: whether its start was part of a burst (it
        came sooner after the last one than the rate alone allows), and the start."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.saturated(now)
        if not self._waiters and self._conforms(now):
            in_burst = now - self._last_start < self._interval
            return in_burst, self._start(now)
        waiter: asyncio.Future[_Start] = loop.create_future()
        self._waiters.append(waiter)
        self._arm(loop)
        try:
            return False, await waiter  # it queued: its start came with a single token
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.refund(waiter.result())  # given the start just as we were cancelled
            else:
                self.saturated(loop.time())
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                if not self._waiters and self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            raise

    def refund(self, start: _Start) -> None:
        """Hand back a start that was not used, if no later start has been given since."""
        if start is not self._refundable:
            return  # the schedule has moved on past it: nothing to give back
        # What other requests' sends have added since stays: they did go out late.
        self._tat = self._anchor(start)
        self._refundable = None  # a second refund of the same start does nothing
        if self._waiters:
            self._grant(asyncio.get_running_loop())

    def _tolerance(self) -> float:
        return (self.burst - 1) * self._interval

    def _due(self) -> float:
        return self._tat - self._tolerance()

    def _conforms(self, now: float) -> bool:
        return now >= self._due()

    def _start(self, now: float) -> _Start:
        # Adapt before each start, on the queueing time so far.
        self._retune(self._control.rate_at(self.saturated(now)), now)
        self._last_start = now
        start = self._refundable = _Start(now, self._tat, self._shifted)
        # GCRA as it is: a timer that runs late slows that start down, and never lets one
        # come sooner than the bucket allows.
        self._tat = max(self._tat, now) + self._interval
        return start

    def sent(self, start: _Start, at: float, applied: float) -> float:
        """The request of ``start`` went out at ``at``: move the schedule on as the server's
        moves; ``applied``, what this request has moved it on by already (it may be sent
        twice). Return what it has moved it on by in all.

        The server's bucket counts from when a request arrives, ours from its start. A
        request that goes out late (a connection to open, a busy loop) moves the server's
        schedule on by as much when its bucket was full, and the next request, on time by
        ours, would come early by theirs: with a bucket of one token, nothing absorbs
        that. GCRA at ``at`` instead of at the start, on the schedule as it stood then,
        moved on by what the other requests' sends have added since.
        """
        anchor = self._anchor(start) - applied
        late = max(anchor, at) - max(anchor, start.at)
        if late > applied:
            self._tat += late - applied
            self._shifted += late - applied
            return late
        return applied

    def _anchor(self, start: _Start) -> float:
        # `_tat` just before ``start``, moved on by what the sends have added since.
        return start.anchor + (self._shifted - start.shifted)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and self._waiters:
            self._timer = loop.call_at(self._due(), self._grant, loop)

    def _grant(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = loop.time()
        if not self._conforms(now):  # the timer ran a little early (clock granularity)
            self._arm(loop)
            return
        self.saturated(now)  # counted up to now, while the waiters still wait
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._start(now))
                break
        self._arm(loop)


# -- how a client calls a limiter, its own or a custom one ------------------------------


@contextlib.contextmanager
def limiter_errors(limiter: Limiter, what: str) -> Iterator[None]:
    """Map what a custom limiter raises (anything but a `FlexError`) onto `FlexError`."""
    try:
        yield
    except FlexError:
        raise
    except Exception as exc:
        raise FlexError(
            f"the limiter ({type(limiter).__name__}) failed to {what}: {exc!r}"
        ) from exc


def takes_throttle(limiter: Limiter) -> bool:
    """Whether the limiter's ``release`` takes the ``throttle`` keyword (see `Limiter`)."""
    try:
        parameters = inspect.signature(limiter.release).parameters.values()
    except (TypeError, ValueError):  # no signature to read: the protocol's own call only
        return False
    # Named, not just accepted by **kwargs: a limiter that forwards its keywords to one
    # written against the protocol's first form would pass on a keyword it does not take.
    return any(
        p.name == "throttle" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        for p in parameters
    )
