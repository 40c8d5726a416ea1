"""The rate budget the emulator enforces, as Twilio does: a token bucket of requests, and the
schedule its rate may follow."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from .._arguments import check_quantity, check_rate
from .._errors import InvalidArgumentError

__all__ = [
    "RateSchedule",
    "TokenBucket",
    "check_rate_schedule",
    "default_burst",
    "parse_rate_schedule",
]

# Elapsed times are differences of floats (of some 1e6 s, on a machine up for days): without
# this slack, a request that arrives exactly when its token is due could find 0.99999999
# tokens and be refused for the rounding alone. A millionth of a token is never a request.
_SLACK: Final = 1e-6


def default_burst(rate: float) -> int:
    """The burst of a bucket refilled at ``rate`` requests/s unless told: a quarter second of
    requests, at least one (5 at Twilio's documented 20/s)."""
    return max(1, round(rate / 4))


class TokenBucket:
    """Up to ``burst`` tokens, refilled continuously at ``rate`` a second; full when made.

    A request takes a whole token (`take`); one that finds less than one is refused and
    takes nothing. Time is read from ``clock`` on each call, so a virtual clock drives it.

    Args:
        rate: tokens added a second, > 0.
        burst: the most tokens held, >= 1.
        clock: the time in seconds, never going back (the event loop's ``time``).
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def __repr__(self) -> str:
        return f"<TokenBucket rate={self._rate:g}/s burst={self._burst} tokens={self.tokens:.3f}>"

    def _refill(self, until: float | None = None) -> None:
        now = self._clock() if until is None else until
        if now > self._updated:
            self._tokens = min(
                float(self._burst), self._tokens + (now - self._updated) * self._rate
            )
            self._updated = now

    @property
    def tokens(self) -> float:
        """The tokens held now (a fraction of one is on its way)."""
        self._refill()
        return self._tokens

    def take(self) -> bool:
        """Take a token if a whole one is there; whether it was."""
        self._refill()
        if self._tokens + _SLACK < 1.0:
            return False
        self._tokens = max(0.0, self._tokens - 1.0)
        return True

    @property
    def rate(self) -> float:
        """Tokens added a second."""
        return self._rate

    @property
    def burst(self) -> int:
        """The most tokens held."""
        return self._burst

    def retune(self, rate: float, burst: int, at: float | None = None) -> None:
        """Refill at ``rate`` from ``at`` on (a time not after now, by the clock; ``None``:
        now), holding at most ``burst`` tokens: the tokens held then are kept, but for those
        above the new burst. A change that fell due between two calls is so applied at the
        instant it was due, as if a timer had fired exactly then."""
        self._refill(at)
        self._rate = rate
        self._burst = burst
        self._tokens = min(self._tokens, float(burst))


RateSchedule = tuple[tuple[float, float], ...]
"""Steps of a budget: ``(seconds, rate)`` pairs, ``seconds`` strictly increasing."""


def check_rate_schedule(schedule: object, rate_limit: object) -> RateSchedule:
    """Return ``schedule`` as `RateSchedule` if it is one: ``None`` or a sequence of
    ``(seconds, rate)`` pairs, each ``seconds`` a finite number >= 0 greater than the one
    before, each ``rate`` a rate (`check_rate`); a schedule that is not empty needs a
    ``rate_limit``, the rate before its first step.

    Raises:
        InvalidArgumentError: it is anything else.
    """
    if schedule is None:
        return ()
    if isinstance(schedule, str | bytes) or not isinstance(schedule, Sequence):
        raise InvalidArgumentError(
            f"rate_schedule must be a sequence of (seconds, rate) pairs, got {schedule!r}"
        )
    steps: list[tuple[float, float]] = []
    for step in schedule:
        if isinstance(step, str | bytes) or not isinstance(step, Sequence) or len(step) != 2:
            raise InvalidArgumentError(
                f"each step of rate_schedule must be a (seconds, rate) pair, got {step!r}"
            )
        seconds = check_quantity("a rate_schedule step's seconds", step[0], unit="seconds")
        rate = check_rate("a rate_schedule step's rate", step[1])
        if steps and seconds <= steps[-1][0]:
            raise InvalidArgumentError(
                f"rate_schedule's seconds must increase, got {seconds:g} after {steps[-1][0]:g}"
            )
        steps.append((seconds, rate))
    if steps and rate_limit is None:
        raise InvalidArgumentError(
            "rate_schedule changes a rate_limit: give rate_limit too, the rate before its "
            "first step"
        )
    return tuple(steps)


def parse_rate_schedule(text: str) -> list[tuple[float, float]]:
    """``"5:10,13:20"``: 10 a second from 5 s, 20 from 13 s, as `FlexEmulator`'s
    ``rate_schedule``; not checked beyond the syntax (`check_rate_schedule` does that).

    Raises:
        ValueError: the text is not comma-separated ``SECONDS:RATE`` pairs of numbers.
    """
    steps = []
    for part in text.split(","):
        seconds, colon, rate = part.partition(":")
        if not colon:
            raise ValueError(f"not SECONDS:RATE: {part!r}")
        steps.append((float(seconds), float(rate)))
    return steps
