"""The one rule for numeric arguments, used by every module that takes one.

A count is an ``int`` and never a ``bool`` (``True`` is not one request); a quantity (seconds,
requests per second) is an ``int`` or a ``float``, never a ``bool``, and finite: NaN compares
false with everything, so it would slip past every range check, and infinity is no timeout,
rate or wait that a caller means. Each check raises `InvalidArgumentError`, a `ValueError`.
"""

from __future__ import annotations

import math

from ._errors import InvalidArgumentError

__all__ = ["check_count", "check_quantity"]


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
