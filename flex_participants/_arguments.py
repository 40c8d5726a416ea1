"""The one rule for numeric arguments, used by every module that takes one.

A count is an ``int`` and never a ``bool`` (``True`` is not one request); a quantity (seconds,
requests per second) is an ``int`` or a ``float``, never a ``bool``, and finite: NaN compares
false with everything, so it would slip past every range check, and infinity is no timeout,
rate or wait that a caller means. Each check raises `InvalidArgumentError`, a `ValueError`.

A command line holds its options to the same rules with `option_type`, so that it refuses
first, in the same words, what the library would refuse.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

from ._errors import InvalidArgumentError

__all__ = ["check_burst", "check_count", "check_quantity", "check_rate", "option_type"]

_T = TypeVar("_T")

# Slower than one request in 11 days, the interval between two requests is no usable time
# (at 1e-320, 1 / rate is infinite, and a timer set from it never fires).
_SLOWEST_RATE = 1e-6


def check_count(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) from ``minimum`` to ``maximum``.

    Raises:
        InvalidArgumentError: it is anything else.
    """
    if type(value) is int and value >= minimum and (maximum is None or value <= maximum):
        return value
    if maximum is None:
        wanted = f"an integer >= {minimum}"
    else:
        wanted = f"an integer from {minimum} to {maximum}"
    raise InvalidArgumentError(f"{name} must be {wanted}, got {value!r}")


def check_quantity(
    name: str, value: object, *, minimum: float = 0.0, strict: bool = False, unit: str = ""
) -> float:
    """Return ``value`` as a float if it is a finite ``int`` or ``float`` (not a ``bool``) at
    least ``minimum`` (above it, if ``strict``).

    Args:
        name: the argument's name, for the message.
        value: what the caller passed.
        minimum: the smallest value allowed (or the bound it must exceed, if ``strict``).
        strict: whether ``minimum`` itself is refused.
        unit: what the number counts ("seconds"), for the message.

    Raises:
        InvalidArgumentError: it is anything else.
    """
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > minimum if strict else value >= minimum)
    ):
        return float(value)
    what = f"a finite number of {unit}" if unit else "a finite number"
    raise InvalidArgumentError(
        f"{name} must be {what} {'>' if strict else '>='} {minimum:g}, got {value!r}"
    )


def check_rate(name: str, value: object) -> float:
    """Return ``value`` as a rate of requests per second: a finite number > 0, and at least
    one request in 11 days (1e-6 per second).

    Raises:
        InvalidArgumentError: it is anything else.
    """
    rate = check_quantity(name, value, strict=True, unit="requests per second")
    if rate < _SLOWEST_RATE:
        raise InvalidArgumentError(
            f"{name} must be at least {_SLOWEST_RATE:g} requests per second, got {rate!r}"
        )
    return rate


def check_burst(burst: object, rate: object) -> int | None:
    """Return the size of a rate's bucket: ``None`` if not given, else an integer >= 1,
    which only a rate (``rate`` not ``None``) can have.

    Raises:
        InvalidArgumentError: a burst without a rate, or one that is no integer >= 1.
    """
    if burst is None:
        return None
    if rate is None:
        raise InvalidArgumentError("burst is the size of a rate's bucket: give rate_limit too")
    return check_count("burst", burst, minimum=1)


def option_type(
    convert: Callable[[str], _T], check: Callable[[_T], object], *, noun: str | None = None
) -> Callable[[str], _T]:
    """An argparse ``type``: ``convert`` the text, then hold it to ``check`` (one of the
    rules above, as the library applies it), so that a value the library would refuse is a
    usage error naming the option, in the library's words, before anything starts.

    ``noun`` says what text ``convert`` takes, for the message when it raises ``ValueError``
    (default: "an integer" for ``int``, "a number" otherwise).
    """
    if noun is None:
        noun = "an integer" if convert is int else "a number"

    def parse(text: str) -> _T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        try:
            check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return parse
