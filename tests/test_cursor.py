"""``stream.cursor`` and ``participants(..., cursor=...)``: resuming where a stream stopped.

The property at the heart of it, against the emulator: for any channel, page sizes and stop
point, what a stream delivered before it stopped, followed by what the stream resumed from
its cursor delivers, is exactly one uninterrupted read of the channel.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from aioresponses import aioresponses
from hypothesis import given, settings
from hypothesis import strategies as st

from flex_participants import (
    FlexClient,
    InvalidArgumentError,
    InvalidResponseError,
    ParticipantStream,
    RetryPolicy,
)
from flex_participants._cursor import _checksum
from flex_participants.emulator import Fault, FlexEmulator

from .helpers import AUTH_TOKEN, KD, UO, Credentials, page_body, participants_url, sid
from .server import sids_until

T = TypeVar("T")


class Running:
    """One emulator for the module's tests, in a loop of its own that outlives each test."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.emulator = FlexEmulator(seed=15)
        self.run(self.emulator.start())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        async def bounded() -> T:
            async with asyncio.timeout(30):
                return await coro

        return self.runner.run(bounded())

    def client(self, **options: Any) -> FlexClient:
        options.setdefault("rate_limit", None)
        options.setdefault("retry", RetryPolicy(backoff_base=0.0))
        return FlexClient(**self.emulator.client_kwargs(), **options)


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    shared = Running()
    yield shared
    shared.run(shared.emulator.stop())
    shared.runner.close()


def sids_of(emulator: FlexEmulator, channel: tuple[str, str]) -> list[str]:
    return [p["sid"] for p in emulator.participants_of(*channel)]


async def consume(
    stream: ParticipantStream, stop: int | None, *, by_page: bool
) -> list[str | None]:
    """What ``stream`` delivers until the caller stops consuming after ``stop`` participants."""
    got: list[str | None] = []
    if by_page:
        async for page in stream.pages():
            got.extend(p.sid for p in page.participants)
            if stop is not None and len(got) >= stop:
                break
    else:
        async for participant in stream:
            got.append(participant.sid)
            if stop is not None and len(got) >= stop:
                break
    return got


# -- the property -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 45),
    page_size=st.none() | st.integers(1, 12),
    resume_page_size=st.none() | st.integers(1, 12),
    stop=st.integers(1, 50),
    by_limit=st.booleans(),
    by_page=st.booleans(),
    prefetch=st.integers(0, 2),
    closed=st.booleans(),
)
def test_stopping_and_resuming_from_the_cursor_reads_the_channel_once(
    running: Running,
    size: int,
    page_size: int | None,
    resume_page_size: int | None,
    stop: int,
    by_limit: bool,
    by_page: bool,
    prefetch: int,
    closed: bool,
) -> None:
    emulator = running.emulator
    channel = emulator.add_channel(participants=size)
    expected = sids_of(emulator, channel)

    async def go() -> tuple[list[str | None], list[str | None] | None]:
        async with running.client() as client:
            stream = client.participants(
                *channel,
                page_size=page_size,
                prefetch=prefetch,
                limit=stop if by_limit else None,
            )
            before = await consume(stream, None if by_limit else stop, by_page=by_page)
            if closed:
                await stream.aclose()
            cursor = stream.cursor
            if cursor is None:
                return before, None
            resumed = client.participants(*channel, cursor=cursor, page_size=resume_page_size)
            return before, [p.sid for p in await resumed.collect()]

    before, after = running.run(go())
    if after is None:
        assert before == [] == expected
    else:
        assert before + after == expected


# -- what a cursor says -------------------------------------------------------------------


def test_the_cursor_is_none_until_a_participant_is_delivered(running: Running) -> None:
    emulator = running.emulator
    channel = emulator.add_channel(participants=5)

    async def go() -> None:
        async with running.client() as client:
            stream = client.participants(*channel)
            assert stream.cursor is None
            async with stream:
                await anext(aiter(stream))
                assert stream.cursor is not None

    running.run(go())


def test_resuming_a_stream_that_read_the_last_page_yields_nothing_and_sends_nothing(
    running: Running,
) -> None:
    emulator = running.emulator
    channel = emulator.add_channel(participants=12)

    async def go() -> None:
        async with running.client() as client:
            stream = client.participants(*channel, page_size=5)
            assert len(await stream.collect()) == 12
            before = emulator.stats.requests
            resumed = client.participants(*channel, cursor=stream.cursor)
            assert await resumed.collect() == []
            assert emulator.stats.requests == before

    running.run(go())


def test_a_limit_inside_a_page_resumes_at_the_next_participant_of_that_page(
    running: Running,
) -> None:
    emulator = running.emulator
    channel = emulator.add_channel(participants=20)
    expected = sids_of(emulator, channel)

    async def go() -> None:
        async with running.client() as client:
            first = await client.participants(*channel, page_size=10, limit=10).collect()
            # Ten delivered of a page of ten: the cursor names the next page.
            stream = client.participants(*channel, page_size=10, limit=3)
            three = await stream.collect()
            rest = await client.participants(*channel, cursor=stream.cursor).collect()
            assert [p.sid for p in first] == expected[:10]
            assert [p.sid for p in three + rest] == expected

    running.run(go())


def test_a_cursor_carries_the_page_url_and_no_credentials(running: Running) -> None:
    emulator = running.emulator
    channel = emulator.add_channel(participants=8)

    async def go() -> str | None:
        async with running.client() as client:
            stream = client.participants(*channel, page_size=5, limit=7)
            await stream.collect()
            return stream.cursor

    cursor = running.run(go())
    assert cursor is not None
    fields = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert fields["u"].startswith(f"{emulator.base_url}/v1/Interactions/{channel[0]}/")
    assert "PageToken=" in fields["u"]
    assert fields["s"] == 2
    assert emulator.auth_token not in cursor
    assert emulator.auth_token not in json.dumps(fields)


def test_a_resumed_stream_keeps_the_streams_paging_protections(running: Running) -> None:
    emulator = running.emulator
    channel = emulator.add_channel(participants=30)
    expected = sids_of(emulator, channel)

    async def go() -> None:
        async with running.client() as client:
            stream = client.participants(*channel, page_size=5, limit=5)
            await stream.collect()
            # From now on every page leads back to itself.
            emulator.add_fault(Fault("cycle", period=1, times=10**9))
            resumed = client.participants(*channel, cursor=stream.cursor)
            got = await sids_until(InvalidResponseError, aiter(resumed), match="already fetched")
            emulator.clear_faults()
            assert got == expected[5:10]

    running.run(go())


# -- cursors refused before any request ---------------------------------------------------


async def _a_cursor(
    mock_http: aioresponses, credentials: Credentials, base_url: str = "https://flex-api.twilio.com"
) -> str:
    """A real cursor of channel KD/UO, from a stream limited inside its first page."""
    next_url = participants_url(base=base_url) + "?PageSize=5&Page=1&PageToken=PTabc"
    body = page_body(range(5), page_size=5, next_page_url=next_url)
    mock_http.get(participants_url(base=base_url) + "?PageSize=5", payload=body)
    async with FlexClient(**credentials, base_url=base_url) as client:
        stream = client.participants(KD, UO, page_size=5)
        async with stream:
            await anext(aiter(stream))
            await anext(aiter(stream))
        assert stream.cursor is not None
        return stream.cursor


def _fields(cursor: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    )
    return decoded


def _encoded(fields: dict[str, Any], *, checksum: bool = True) -> str:
    fields = dict(fields)
    if checksum:
        fields.pop("k")
        fields["k"] = _checksum(fields)
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()


def _edited(**changes: Any) -> Any:
    def edit(fields: dict[str, Any]) -> str:
        return _encoded({**fields, **changes})

    return edit


OTHER_UO = sid("UO", 99)
MANGLED = {
    "not a string": lambda fields: 12345,
    "not base64": lambda fields: "not/base64!",
    "not JSON": lambda fields: base64.urlsafe_b64encode(b"{nope").decode(),
    "not an object": lambda fields: base64.urlsafe_b64encode(b"[1, 2]").decode(),
    "a bad checksum": lambda fields: _encoded({**fields, "s": 3}, checksum=False),
    "another version": _edited(v=2),
    "missing fields": lambda fields: _encoded({"v": 1, "k": fields["k"]}),
    "another endpoint": _edited(e="interactions"),
    "another origin": _edited(o="https://flex-api.dublin.ie1.twilio.com"),
    "another channel": _edited(c=OTHER_UO),
    "a url off the origin": _edited(
        u=participants_url(base="https://evil.example") + "?PageToken=PTabc"
    ),
    "a url with a scheme and no host": _edited(u="javascript:alert(1)"),
    "a relative url": _edited(u="/v1/Interactions/x"),
    "a url of another channel": _edited(u=participants_url(uo=OTHER_UO) + "?PageToken=PTabc"),
    "a url of another endpoint": _edited(u="https://flex-api.twilio.com/v1/Interactions"),
    "a url with credentials": _edited(
        u=participants_url(base="https://user:pw@flex-api.twilio.com")
    ),
    "a negative skip": _edited(s=-1),
    "a skip that is no number": _edited(s="2"),
    "an ended stream with a skip": _edited(u=None, s=2),
}


@pytest.mark.parametrize("how", list(MANGLED))
async def test_a_mangled_or_foreign_cursor_is_refused_before_any_request(
    mock_http: aioresponses, credentials: Credentials, how: str
) -> None:
    cursor = await _a_cursor(mock_http, credentials)
    bad = MANGLED[how](_fields(cursor))
    async with FlexClient(**credentials) as client:
        sent = client.requests_sent
        with pytest.raises(InvalidArgumentError, match="cursor refused"):
            client.participants(KD, UO, cursor=bad)
        assert client.requests_sent == sent


async def test_a_cursor_of_another_channel_is_refused_by_the_one_asked_for(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    cursor = await _a_cursor(mock_http, credentials)
    async with FlexClient(**credentials) as client:
        with pytest.raises(InvalidArgumentError, match="made for channel"):
            client.participants(KD, OTHER_UO, cursor=cursor)
        # The same cursor is good for its own channel.
        client.participants(KD, UO, cursor=cursor)


async def test_a_cursor_of_another_origin_is_refused_by_a_client_of_this_one(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    cursor = await _a_cursor(mock_http, credentials, "https://flex-api.ashburn.us1.twilio.com")
    async with FlexClient(**credentials) as client:
        with pytest.raises(InvalidArgumentError, match="made for a client of"):
            client.participants(KD, UO, cursor=cursor)


async def test_a_cursor_never_holds_the_credentials(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    cursor = await _a_cursor(mock_http, credentials)
    assert AUTH_TOKEN not in json.dumps(_fields(cursor))
