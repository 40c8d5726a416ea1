"""RetryPolicy: which failures are retried, and how long to wait before the next attempt."""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import re
import time
from collections.abc import Callable

import attrs

from ._arguments import check_count, check_quantity
from ._errors import (
    FlexError,
    InvalidArgumentError,
    InvalidResponseError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
    TransportError,
)

__all__ = ["RetryPolicy", "parse_retry_after"]

_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


def _seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    check_quantity(attribute.name, value, unit="seconds")


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    check_count(attribute.name, value, minimum=1)


def _callable(_: object, attribute: attrs.Attribute[Callable[[], float]], value: object) -> None:
    if not callable(value):
        raise InvalidArgumentError(f"{attribute.name} must be callable, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """How a client retries a request that failed for a reason that may pass.

    Retried: HTTP 429, 500, 502, 503 and 504, connection errors, timeouts, and a success
    response whose body was cut off or is not JSON. Never retried: any other status
    (400, 401, 403, 404, ...), and a JSON body of the wrong shape.

    A 429 means the budget is full for now, not that the request is wrong: within
    ``patience`` seconds of a request's first attempt, 429s are retried however many attempts
    that takes, and do not count towards ``max_attempts`` (the client's limiter slows down
    meanwhile, so the retries wait for the budget). After that, a 429 counts like any other
    failure.

    The wait before attempt ``n + 1`` is drawn uniformly from
    ``[0, min(backoff_max, backoff_base * 2 ** (n - 1))]`` ("full jitter"). When a 429 or 503
    carries ``Retry-After``, the wait is at least what it asks, even above ``backoff_max``,
    capped at ``retry_after_max``.

    Args:
        max_attempts: attempts in all, the first included; 1 turns retries off.
        backoff_base: seconds; the ceiling of the first wait.
        backoff_max: seconds; no jittered wait is longer.
        retry_after_max: seconds; the longest ``Retry-After`` that is honoured as given.
        patience: seconds from a request's first attempt during which 429s are retried
            without counting towards ``max_attempts``; 0 counts them from the start.
            Retries stay off with ``max_attempts=1`` whatever this is.
        random: the source of jitter, a callable returning a float in ``[0, 1)``.

    Raises:
        InvalidArgumentError: (a `ValueError`) a number is out of range, not finite, or a
            ``bool``; ``random`` is not callable.
    """

    max_attempts: int = attrs.field(default=4, validator=_at_least_one)
    backoff_base: float = attrs.field(default=0.5, validator=_seconds)
    backoff_max: float = attrs.field(default=20.0, validator=_seconds)
    retry_after_max: float = attrs.field(default=300.0, validator=_seconds)
    patience: float = attrs.field(default=300.0, validator=_seconds, kw_only=True)
    random: Callable[[], float] = attrs.field(
        default=random.random, repr=False, validator=_callable
    )

    def should_retry(self, error: FlexError) -> bool:
        """Whether ``error`` is worth another attempt (ignoring how many were made)."""
        if isinstance(error, RateLimitError | ServerError):
            return error.status in _RETRIED_STATUSES
        if isinstance(error, ResponseTooLargeError):
            return False  # it would be as large again
        if isinstance(error, InvalidResponseError):
            # A 200 whose body is cut off or not JSON may come through whole next time;
            # JSON of the wrong shape, or a redirect, will not.
            return error.status == 200 and not error.is_json
        return isinstance(error, TransportError)

    def counts(self, error: FlexError, elapsed: float) -> bool:
        """Whether a failed attempt counts towards ``max_attempts``: all do, but a 429 within
        ``patience`` seconds (``elapsed``) of the request's first attempt, retries being on."""
        return not (
            isinstance(error, RateLimitError)
            and error.status == 429
            and self.max_attempts > 1
            and elapsed < self.patience
        )

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


_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for: delta-seconds or an HTTP date.

    Total over every string a server can send: anything unusable (not a number nor a date, a
    date whose year overflows, NaN, a negative number) is ``None``, never an exception.
    """
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        # RFC 9110 says delta-seconds is digits; the fraction is a leniency. float() alone
        # would also take "nan", "1_0", "-5" and other scripts' digits.
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
            if when.tzinfo is None:  # an HTTP date is GMT, even in asctime form, which says none
                when = when.replace(tzinfo=datetime.UTC)
            seconds = when.timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError):
            # A year such as 99999, or one that datetime accepts but whose timestamp does not
            # fit, is as unusable as no date.
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
