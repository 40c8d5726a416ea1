"""`_retry`: which failures are retried, how long to wait, and reading ``Retry-After``."""

from __future__ import annotations

import calendar
import math
from email.utils import formatdate
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flex_participants._errors import (
    AuthenticationError,
    FlexAPIError,
    FlexError,
    InvalidArgumentError,
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
    UnsafeURLError,
)
from flex_participants._retry import RetryPolicy, parse_retry_after

URL = "https://flex-api.twilio.com/v1/Interactions/x/Channels/y/Participants"
ALMOST_ONE = 1.0 - 2.0**-53  # the largest float below 1, the most `random.random` can return
# 2015-10-21 07:28:00 GMT, as a POSIX timestamp.
OCT_21_2015 = calendar.timegm((2015, 10, 21, 7, 28, 0))
HTTP_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"


def fixed(value: float) -> RetryPolicy:
    """The default policy with ``random`` always returning ``value``."""
    return RetryPolicy(random=lambda: value)


# Construction


def test_defaults() -> None:
    policy = RetryPolicy()

    assert policy.max_attempts == 4
    assert policy.backoff_base == 0.5
    assert policy.backoff_max == 20.0
    assert policy.retry_after_max == 300.0


def test_the_policy_is_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        RetryPolicy().max_attempts = 1  # type: ignore[misc]


def test_the_jitter_source_is_not_in_the_repr() -> None:
    assert "random" not in repr(RetryPolicy())


def test_one_attempt_turns_retries_off_and_is_valid() -> None:
    assert RetryPolicy(max_attempts=1).max_attempts == 1


def test_zero_waits_are_valid() -> None:
    policy = RetryPolicy(backoff_base=0, backoff_max=0.0, retry_after_max=0)

    assert policy.delay(3, retry_after=10.0) == 0.0


@pytest.mark.parametrize("value", [0, -1, 1.0, 2.5, True, "4", None], ids=repr)
def test_max_attempts_must_be_an_integer_of_at_least_one(value: Any) -> None:
    with pytest.raises(ValueError, match="max_attempts must be an integer >= 1"):
        RetryPolicy(max_attempts=value)


@pytest.mark.parametrize("field", ["backoff_base", "backoff_max", "retry_after_max"])
@pytest.mark.parametrize("value", [-0.1, -1, math.inf, -math.inf, math.nan, "1", None], ids=repr)
def test_a_wait_must_be_a_finite_number_of_zero_or_more(field: str, value: Any) -> None:
    with pytest.raises(
        InvalidArgumentError, match=f"{field} must be a finite number of seconds >= 0"
    ):
        RetryPolicy(**{field: value})


# should_retry


def api_error(cls: type[FlexAPIError], status: int) -> FlexAPIError:
    return cls("failed", status=status, url=URL)


@pytest.mark.parametrize(
    "error",
    [
        api_error(RateLimitError, 429),
        api_error(ServerError, 500),
        api_error(ServerError, 502),
        api_error(ServerError, 503),
        api_error(ServerError, 504),
        TransportError("connection reset"),
        TransportError("request timed out"),
        InvalidResponseError("cut off", url=URL, status=200, is_json=False),
    ],
    ids=["429", "500", "502", "503", "504", "reset", "timeout", "200-not-json"],
)
def test_transient_failures_are_retried(error: FlexError) -> None:
    assert RetryPolicy().should_retry(error)


@pytest.mark.parametrize(
    "error",
    [
        api_error(FlexAPIError, 400),
        api_error(AuthenticationError, 401),
        api_error(AuthenticationError, 403),
        api_error(NotFoundError, 404),
        api_error(ServerError, 501),
        api_error(ServerError, 505),
        api_error(FlexAPIError, 429),
        InvalidResponseError("wrong shape", url=URL, status=200, is_json=True),
        InvalidResponseError("redirect", url=URL, status=302, is_json=False),
        InvalidArgumentError("bad sid"),
        UnsafeURLError("elsewhere"),
        FlexError("anything else"),
    ],
    ids=[
        "400",
        "401",
        "403",
        "404",
        "501",
        "505",
        "429-not-a-rate-limit-error",
        "200-wrong-shape",
        "redirect",
        "invalid-argument",
        "unsafe-url",
        "base-class",
    ],
)
def test_lasting_failures_are_not_retried(error: FlexError) -> None:
    assert not RetryPolicy().should_retry(error)


def test_should_retry_ignores_how_many_attempts_were_made() -> None:
    error = ServerError("failed", status=503, url=URL, attempts=99)

    assert RetryPolicy(max_attempts=1).should_retry(error)


# delay


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 16.0), (7, 20.0), (30, 20.0)],
)
def test_the_largest_wait_is_the_exponential_ceiling_capped_at_backoff_max(
    attempt: int, ceiling: float
) -> None:
    delay = fixed(ALMOST_ONE).delay(attempt)

    assert delay <= ceiling
    assert delay == pytest.approx(ceiling)


@pytest.mark.parametrize("attempt", [1, 2, 7, 30])
def test_the_smallest_wait_is_zero(attempt: int) -> None:
    assert fixed(0.0).delay(attempt) == 0.0


def test_the_wait_is_the_ceiling_scaled_by_the_jitter() -> None:
    assert fixed(0.25).delay(3) == 0.5


def test_the_jitter_is_drawn_once_per_delay() -> None:
    draws: list[float] = []

    def source() -> float:
        draws.append(0.5)
        return 0.5

    policy = RetryPolicy(random=source)
    policy.delay(1)
    policy.delay(2, retry_after=1.0)

    assert len(draws) == 2


@pytest.mark.parametrize("attempt", [1000, 1024, 1025, 10_000])
def test_a_huge_attempt_number_waits_backoff_max_without_overflowing(attempt: int) -> None:
    assert fixed(ALMOST_ONE).delay(attempt) == pytest.approx(20.0)


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=5000),
    jitter=st.floats(min_value=0.0, max_value=ALMOST_ONE),
    base=st.floats(min_value=0.0, max_value=10.0),
    cap=st.floats(min_value=0.0, max_value=100.0),
)
def test_the_wait_stays_within_full_jitter_bounds(
    attempt: int, jitter: float, base: float, cap: float
) -> None:
    policy = RetryPolicy(backoff_base=base, backoff_max=cap, random=lambda: jitter)

    assert 0.0 <= policy.delay(attempt) <= min(cap, base * 2.0 ** min(attempt - 1, 1023))


def test_retry_after_is_honoured_above_backoff_max() -> None:
    assert fixed(0.0).delay(1, retry_after=60.0) == 60.0


def test_retry_after_is_capped_at_retry_after_max() -> None:
    assert fixed(0.0).delay(1, retry_after=10_000.0) == 300.0
    assert RetryPolicy(retry_after_max=5.0, random=lambda: 0.0).delay(1, retry_after=9.0) == 5.0


def test_a_longer_jittered_wait_wins_over_a_short_retry_after() -> None:
    assert fixed(ALMOST_ONE).delay(7, retry_after=3.0) == pytest.approx(20.0)


def test_a_zero_retry_after_leaves_the_jittered_wait() -> None:
    assert fixed(0.5).delay(2, retry_after=0.0) == 0.5


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=40),
    jitter=st.floats(min_value=0.0, max_value=ALMOST_ONE),
    retry_after=st.floats(min_value=0.0, max_value=1000.0),
)
def test_the_wait_is_never_less_than_retry_after_up_to_its_cap(
    attempt: int, jitter: float, retry_after: float
) -> None:
    policy = fixed(jitter)

    delay = policy.delay(attempt, retry_after=retry_after)

    assert delay >= min(retry_after, policy.retry_after_max)
    assert delay <= max(policy.backoff_max, policy.retry_after_max)


# parse_retry_after


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("1", 1.0), ("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5), ("0.25", 0.25)],
)
def test_delta_seconds_are_read_as_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        HTTP_DATE,
        "Wed, 21 Oct 2015 07:28:00 +0000",
        "Wednesday, 21-Oct-15 07:28:00 GMT",
        "Wed Oct 21 07:28:00 2015",
    ],
    ids=["imf-fixdate", "numeric-zone", "rfc850", "asctime"],
)
def test_an_http_date_is_read_as_seconds_from_now(value: str) -> None:
    assert parse_retry_after(value, now=OCT_21_2015 - 30) == 30.0


def test_an_http_date_in_another_zone_is_converted() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 09:28:00 +0200", now=OCT_21_2015) == 0.0


def test_an_http_date_defaults_to_the_current_time() -> None:
    in_a_minute = formatdate(timeval=OCT_21_2015 + 60, usegmt=True)

    # A minute ahead of the given `now`, long past by the wall clock.
    assert parse_retry_after(in_a_minute) == 0.0
    assert parse_retry_after(in_a_minute, now=OCT_21_2015) == 60.0


def test_a_past_http_date_means_no_wait() -> None:
    assert parse_retry_after(HTTP_DATE, now=OCT_21_2015 + 3600) == 0.0


@pytest.mark.parametrize("value", ["-5", "-0.5", "+5", "1_0", "nan", "inf", "1e3", "\u0661\u0660"])
def test_anything_but_digits_is_not_delta_seconds(value: str) -> None:
    # RFC 9110: delta-seconds = 1*DIGIT; float() would take all of these.
    assert parse_retry_after(value) is None


@pytest.mark.parametrize("value", [None, "", "   "], ids=repr)
def test_no_header_gives_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "soon",
        "0x10",
        "1 2",
        "5s",
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "Wed, 21 Oct 99999 07:28:00 GMT",
        "21 Oct",
    ],
)
def test_garbage_gives_none(value: str) -> None:
    assert parse_retry_after(value, now=OCT_21_2015) is None


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "nan", "NaN", "1e999"])
def test_a_value_that_is_not_finite_gives_none(value: str) -> None:
    assert parse_retry_after(value) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_header_value_gives_none_or_a_finite_wait(value: str) -> None:
    seconds = parse_retry_after(value, now=OCT_21_2015)

    assert seconds is None or (math.isfinite(seconds) and seconds >= 0.0)


@settings(max_examples=500)
@given(
    st.one_of(
        st.text(),
        st.builds(
            "{}, {:02d} {} {} {:02d}:{:02d}:{:02d} {}".format,
            st.sampled_from(["Mon", "Fri", "Xyz"]),
            st.integers(0, 99),
            st.sampled_from(["Jan", "Dec", "Foo"]),
            st.integers(-99999, 999999),
            st.integers(0, 99),
            st.integers(0, 99),
            st.integers(0, 99),
            st.sampled_from(["GMT", "+2359", "-2359", "+9999", "UT", ""]),
        ),
    )
)
def test_parse_retry_after_is_total_over_whatever_a_server_sends(value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


@pytest.mark.parametrize(
    "date",
    [
        "Fri, 31 Dec 99999 23:59:59 GMT",
        "Fri, 31 Dec 99999999999999999999 23:59:59 GMT",
        "Fri, 31 Dec 2025 99999999999:59:59 GMT",
        "Fri, 31 Dec 9999 23:59:59 -2359",
        "Mon, 01 Jan 0001 00:00:00 +2359",
        "Mon, 01 Jan 0000 00:00:00 GMT",
        "Thu, 01 Jan 1970 99:99:99 GMT",
    ],
)
def test_a_date_out_of_any_range_is_a_wait_or_nothing_never_an_exception(date: str) -> None:
    seconds = parse_retry_after(date)
    assert seconds is None or seconds >= 0


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("field", ["backoff_base", "backoff_max", "retry_after_max"])
def test_a_bool_is_no_number_of_seconds(field: str, value: bool) -> None:
    options: dict[str, Any] = {field: value}
    with pytest.raises(InvalidArgumentError):
        RetryPolicy(**options)


@pytest.mark.parametrize("value", [True, 0, 1.5, "3"])
def test_max_attempts_must_be_an_integer_of_one_or_more(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match="max_attempts"):
        RetryPolicy(max_attempts=value)  # type: ignore[arg-type]


def test_random_must_be_callable() -> None:
    with pytest.raises(InvalidArgumentError, match="random"):
        RetryPolicy(random=0.5)  # type: ignore[arg-type]
