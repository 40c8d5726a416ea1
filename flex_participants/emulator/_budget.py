"""The rate budget the emulator enforces, as Twilio does: a token bucket of requests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

__all__ = ["TokenBucket", "default_burst"]

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

    def _refill(self) -> None:
        now = self._clock()
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

    def retune(self, rate: float, burst: int) -> None:
        """Refill at ``rate`` from now on, holding at most ``burst`` tokens: the tokens held
        are kept, but for those above the new burst."""
        self._refill()
        self._rate = rate
        self._burst = burst
        self._tokens = min(self._tokens, float(burst))
