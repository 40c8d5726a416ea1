"""RetryPolicy: which failures are retried, and how long to wait before the next attempt."""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import time
from collections.abc import Callable

import attrs

from ._errors import FlexError, InvalidResponseError, RateLimitError, ServerError, TransportError

__all__ = ["RetryPolicy", "parse_retry_after"]

_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """How a client retries a request that failed for a reason that may pass.

    Retried: HTTP 429, 500, 502, 503 and 504, connection errors, timeouts, and a success
    response whose body was cut off or is not JSON. Never retried: any other status
    (400, 401, 403, 404, ...), and a JSON body of the wrong shape.

    The wait before attempt ``n + 1`` is drawn uniformly from
    ``[0, min(backoff_max, backoff_base * 2 ** (n - 1))]`` ("full jitter"). When a 429 or 503
    carries ``Retry-After``, the wait is at least what it asks, even above ``backoff_max``,
    capped at ``retry_after_max``.

    Args:
        max_attempts: attempts in all, the first included; 1 turns retries off.
        backoff_base: seconds; the ceiling of the first wait.
        backoff_max: seconds; no jittered wait is longer.
        retry_after_max: seconds; the longest ``Retry-After`` that is honoured as given.
        random: the source of jitter, a callable returning a float in ``[0, 1)``.

    Raises:
        ValueError: a number is out of range.
    """

    max_attempts: int = attrs.field(default=4, validator=_at_least_one)
    backoff_base: float = attrs.field(default=0.5, validator=_positive)
    backoff_max: float = attrs.field(default=20.0, validator=_positive)
    retry_after_max: float = attrs.field(default=300.0, validator=_positive)
    random: Callable[[], float] = attrs.field(default=random.random, repr=False)

    def should_retry(self, error: FlexError) -> bool:
        """Whether ``error`` is worth another attempt (ignoring how many were made)."""
        if isinstance(error, RateLimitError | ServerError):
            return error.status in _RETRIED_STATUSES
        if isinstance(error, InvalidResponseError):
            # A 200 whose body is cut off or not JSON may come through whole next time;
            # JSON of the wrong shape, or a redirect, will not.
            return error.status == 200 and not error.is_json
        return isinstance(error, TransportError)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (counting from 1).

        Args:
            attempt: the number of the attempt that failed.
            retry_after: the server's ``Retry-After`` in seconds, if it sent one.
        """
        # 2.0 ** 1024 raises OverflowError; a larger product is inf, which `min` turns into the cap.
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** min(attempt - 1, 1023))
        jittered = ceiling * self.random()
        if retry_after is None:
            return jittered
        return max(jittered, min(retry_after, self.retry_after_max))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for: delta-seconds or an HTTP date; ``None`` if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT, even in asctime form, which says none
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
