"""Twilio's hosts and codes: region and edge as Twilio advises, and 45780 as a rate limit."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from flex_participants import (
    FlexClient,
    FlexHostWarning,
    InvalidArgumentError,
    ParticipantPage,
    RateLimitError,
    RetryPolicy,
)
from flex_participants._request import build_base_url
from flex_participants.emulator import Fault, FlexEmulator

from .helpers import Credentials

DEFAULT_HOST = "https://flex-api.twilio.com"

# -- region and edge ----------------------------------------------------------------------


def test_neither_region_nor_edge_is_flex_default_host() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert str(build_base_url(None, None, None)) == DEFAULT_HOST


def test_edge_and_region_us1_give_the_edge_host_of_us1() -> None:
    assert str(build_base_url(None, "us1", "dublin")) == "https://flex-api.dublin.us1.twilio.com"


def test_an_edge_alone_implies_region_us1() -> None:
    assert str(build_base_url(None, None, "sydney")) == "https://flex-api.sydney.us1.twilio.com"


@pytest.mark.parametrize(("region", "edge"), [("au1", None), ("ie1", "dublin"), ("jp1", "tokyo")])
def test_a_region_other_than_us1_is_refused_because_flex_runs_in_us1_only(
    region: str, edge: str | None
) -> None:
    with pytest.raises(InvalidArgumentError, match=rf"region '{region}'.*US1 region only"):
        build_base_url(None, region, edge)


def test_region_us1_without_an_edge_warns_and_uses_the_default_host(
    credentials: Credentials,
) -> None:
    with pytest.warns(
        FlexHostWarning, match=r"region 'us1' without an edge: using https://flex-api\.twilio\.com"
    ):
        client = FlexClient(**credentials, region="us1")

    assert client.base_url == DEFAULT_HOST


def test_the_host_warning_points_at_the_line_that_made_the_client(
    credentials: Credentials,
) -> None:
    with pytest.warns(FlexHostWarning) as caught:
        FlexClient(**credentials, region="us1")

    assert [warning.filename for warning in caught] == [__file__]


def test_the_host_warning_is_a_user_warning_that_can_be_filtered(
    credentials: Credentials,
) -> None:
    assert issubclass(FlexHostWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", FlexHostWarning)
        assert FlexClient(**credentials, region="us1").base_url == DEFAULT_HOST


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"TWILIO_EDGE": "tokyo"}, "https://flex-api.tokyo.us1.twilio.com"),
        ({"TWILIO_EDGE": "tokyo", "TWILIO_REGION": "us1"}, "https://flex-api.tokyo.us1.twilio.com"),
    ],
)
def test_the_environment_gives_region_and_edge_under_the_same_rules(
    credentials: Credentials,
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    expected: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    assert FlexClient(**credentials).base_url == expected


def test_a_region_from_the_environment_that_cannot_reach_flex_is_refused(
    credentials: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_REGION", "au1")

    with pytest.raises(InvalidArgumentError, match="TWILIO_REGION"):
        FlexClient(**credentials)


def test_region_us1_from_the_environment_without_an_edge_warns(
    credentials: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_REGION", "us1")

    with pytest.warns(FlexHostWarning):
        assert FlexClient(**credentials).base_url == DEFAULT_HOST


def test_a_base_url_leaves_region_and_edge_unread(
    credentials: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_REGION", "au1")

    client = FlexClient(**credentials, base_url="http://127.0.0.1:8080")

    assert client.base_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("region", "edge"),
    [
        ("us1.evil.example", None),
        (None, "sydney.evil.example"),
        (None, "a/b"),
        (None, "-sydney"),
        ("us 1", "sydney"),
    ],
)
def test_a_region_or_edge_that_is_no_host_name_label_is_refused(
    region: str | None, edge: str | None
) -> None:
    with pytest.raises(InvalidArgumentError, match="must be a Twilio"):
        build_base_url(None, region, edge)


# -- 45780, "too many concurrent API requests" --------------------------------------------


@pytest_asyncio.fixture
async def one_at_a_time() -> AsyncIterator[FlexEmulator]:
    """An emulator that takes one request at a time, answering the others 429 with 45780;
    the first channel's first page is slow, to hold the only place."""
    async with FlexEmulator(max_in_flight=1, concurrency_code=45780) as emulator:
        slow = emulator.add_channel(participants=3)
        emulator.add_channel(participants=4)
        emulator.add_fault(Fault("slow", channel_sid=slow[1], delay=0.3))
        yield emulator


async def _while_the_slow_request_holds_the_place(
    emulator: FlexEmulator, client: FlexClient
) -> asyncio.Task[ParticipantPage]:
    slow = asyncio.create_task(client.fetch_page(*emulator.channels[0]))
    # The server's own counter: the slow request is being answered.
    while emulator.stats.in_flight == 0:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    return slow


async def test_45780_is_a_rate_limit_error_with_its_code(one_at_a_time: FlexEmulator) -> None:
    retry = RetryPolicy(max_attempts=1, patience=0.0)
    async with FlexClient(**one_at_a_time.client_kwargs(), rate_limit=None, retry=retry) as client:
        slow = await _while_the_slow_request_holds_the_place(one_at_a_time, client)
        with pytest.raises(RateLimitError) as caught:
            await client.fetch_page(*one_at_a_time.channels[1])
        await slow

    assert (caught.value.status, caught.value.code) == (429, 45780)


async def test_45780_is_retried_like_20429(one_at_a_time: FlexEmulator) -> None:
    retry = RetryPolicy(backoff_base=0.05)
    async with FlexClient(**one_at_a_time.client_kwargs(), rate_limit=None, retry=retry) as client:
        slow = await _while_the_slow_request_holds_the_place(one_at_a_time, client)
        page = await client.fetch_page(*one_at_a_time.channels[1])
        await slow

    assert len(page.participants) == 4
    assert client.retries >= 1
    assert one_at_a_time.stats.concurrency_throttled == client.retries
