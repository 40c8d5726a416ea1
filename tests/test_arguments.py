"""`_arguments`: the one rule for numeric arguments, everywhere the package takes one."""

from __future__ import annotations

import math
from typing import Any

import pytest
from redis.asyncio import Redis

from flex_participants import AdaptiveLimiter, FlexClient, InvalidArgumentError, RetryPolicy
from flex_participants._arguments import check_count, check_quantity
from flex_participants.emulator import FlexEmulator
from flex_participants.redis import RedisLimiter

from .helpers import KD, UO, Credentials

NOT_A_COUNT = [True, False, 1.0, "1", None, math.nan]
NOT_A_QUANTITY = [True, False, math.nan, math.inf, -math.inf, "1", None, 1j]


@pytest.mark.parametrize("value", NOT_A_COUNT, ids=repr)
def test_a_count_is_an_int_and_never_a_bool(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match=r"n must be an integer >= 0, got"):
        check_count("n", value, minimum=0)


def test_a_count_outside_its_range_names_the_range() -> None:
    with pytest.raises(InvalidArgumentError, match="from 1 to 3, got 4"):
        check_count("n", 4, minimum=1, maximum=3)
    assert check_count("n", 3, minimum=1, maximum=3) == 3


@pytest.mark.parametrize("value", NOT_A_QUANTITY, ids=repr)
def test_a_quantity_is_a_finite_int_or_float_and_never_a_bool(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match="must be a finite number of seconds >= 0"):
        check_quantity("wait", value, unit="seconds")


def test_a_strict_minimum_refuses_the_minimum_itself() -> None:
    with pytest.raises(InvalidArgumentError, match="> 0"):
        check_quantity("rate", 0, strict=True)
    assert check_quantity("rate", 1, strict=True) == 1.0


def test_every_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="n must be"):
        check_count("n", True, minimum=0)


# Every public entry point that takes a number follows the one rule.

ENTRY_POINTS: dict[str, Any] = {
    "FlexClient(max_concurrency=)": lambda c, v: FlexClient(**c, max_concurrency=v),
    "FlexClient(timeout=)": lambda c, v: FlexClient(**c, timeout=v),
    "FlexClient(rate_limit=)": lambda c, v: FlexClient(**c, rate_limit=v),
    "FlexClient(max_body_size=)": lambda c, v: FlexClient(**c, max_body_size=v),
    "AdaptiveLimiter(max_concurrency)": lambda c, v: AdaptiveLimiter(v),
    "AdaptiveLimiter(rate_limit=)": lambda c, v: AdaptiveLimiter(1, rate_limit=v),
    "RetryPolicy(max_attempts=)": lambda c, v: RetryPolicy(max_attempts=v),
    "RetryPolicy(backoff_base=)": lambda c, v: RetryPolicy(backoff_base=v),
    "participants(page_size=)": lambda c, v: FlexClient(**c).participants(KD, UO, page_size=v),
    "participants(limit=)": lambda c, v: FlexClient(**c).participants(KD, UO, limit=v),
    "participants(prefetch=)": lambda c, v: FlexClient(**c).participants(KD, UO, prefetch=v),
    "participants_for_channels(concurrency=)": lambda c, v: FlexClient(
        **c
    ).participants_for_channels([], concurrency=v),
}


@pytest.mark.parametrize("value", [True, math.nan, math.inf], ids=repr)
@pytest.mark.parametrize("entry", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_no_entry_point_takes_a_bool_nan_or_infinity(
    credentials: Credentials, entry: Any, value: object
) -> None:
    with pytest.raises(InvalidArgumentError):
        entry(credentials, value)


# The rate and its burst: one rule for the client, the limiters and the emulator.

RATE_TAKERS: dict[str, Any] = {
    "FlexClient": lambda c, rate, burst: FlexClient(**c, rate_limit=rate, burst=burst),
    "AdaptiveLimiter": lambda c, rate, burst: AdaptiveLimiter(1, rate_limit=rate, burst=burst),
    "RedisLimiter": lambda c, rate, burst: RedisLimiter(
        Redis(), max_concurrency=1, rate_limit=rate, burst=burst
    ),
    "FlexEmulator": lambda c, rate, burst: FlexEmulator(rate_limit=rate, burst=burst),
}


@pytest.mark.parametrize("taker", RATE_TAKERS.values(), ids=RATE_TAKERS.keys())
def test_no_rate_taker_takes_a_rate_too_slow_to_schedule(
    credentials: Credentials, taker: Any
) -> None:
    with pytest.raises(InvalidArgumentError, match="at least 1e-06 requests per second"):
        taker(credentials, 1e-320, None)


@pytest.mark.parametrize("taker", RATE_TAKERS.values(), ids=RATE_TAKERS.keys())
def test_no_rate_taker_takes_a_burst_without_a_rate(credentials: Credentials, taker: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="give rate_limit too"):
        taker(credentials, None, 3)


@pytest.mark.parametrize("burst", [0, True, 1.5], ids=repr)
@pytest.mark.parametrize("taker", RATE_TAKERS.values(), ids=RATE_TAKERS.keys())
def test_no_rate_taker_takes_a_burst_that_is_no_count(
    credentials: Credentials, taker: Any, burst: object
) -> None:
    with pytest.raises(InvalidArgumentError, match="burst must be an integer >= 1"):
        taker(credentials, 5, burst)
