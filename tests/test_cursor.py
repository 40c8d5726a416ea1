"""``stream.cursor`` and ``participants(..., cursor=...)``: resuming where a stream stopped.

The property at the heart of it, against the emulator: for any channel, page sizes and stop
point, what a stream delivered before it stopped, followed by what the stream resumed from
its cursor delivers, is exactly one uninterrupted read of the channel.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aioresponses import aioresponses
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from yarl import URL

from flex_participants import (
    FlexClient,
    InvalidArgumentError,
    InvalidResponseError,
    ParticipantStream,
    RetryPolicy,
)
from flex_participants._cursor import _checksum, encode_cursor, resume
from flex_participants._errors import FlexError
from flex_participants._request import (
    MAX_BASE_URL_LENGTH,
    MAX_PAGE_URL_LENGTH,
    build_base_url,
)
from flex_participants._request import participants_url as page_url
from flex_participants._stream import _Pager
from flex_participants.emulator import Fault, FlexEmulator

from .helpers import (
    AUTH_TOKEN,
    KD,
    UO,
    Credentials,
    page_body,
    participants_url,
    request_count,
    sid,
)
from .server import PagedServer, Seen, sids_until

T = TypeVar("T")
ClientFor = Callable[..., FlexClient]


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


# -- whatever a stream gives, its client takes back; nothing else ---------------------------

ORIGIN = URL("https://flex-api.twilio.com")
CHANNEL = (KD, UO)
FIRST_URL = URL(participants_url())


def test_a_cursor_nested_to_any_depth_is_an_invalid_argument() -> None:
    # Around the interpreter's recursion limit, where the JSON parser gives up, or parses what
    # anything recursing over it afterwards (a checksum, a repr) cannot.
    fields = _fields(encode_cursor(FIRST_URL, 0, origin=ORIGIN, channel=CHANNEL))
    head, tail = json.dumps({**fields, "e": None}).split("null")
    limit = sys.getrecursionlimit()
    for depth in [*range(limit - 60, limit + 10), 6000]:
        raw = f"{head}{'[' * depth}{']' * depth}{tail}".encode()
        with pytest.raises(InvalidArgumentError, match="cursor refused"):
            resume(_b64(raw), ORIGIN, CHANNEL, page_size=None)


async def test_the_cursor_inside_a_page_of_more_than_1000_participants_resumes_there(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    # The client asks for 1,000 at most; a server may send more on a page.
    async def one_big_page(seen: Seen) -> web.StreamResponse:
        return web.json_response(page_body(range(1500), page_size=1500))

    paged_server.hook = one_big_page
    async with client_for(paged_server) as client:
        async with client.participants(KD, UO, limit=1200) as stream:
            await stream.collect()
        assert stream.cursor is not None
        rest = await client.participants(KD, UO, cursor=stream.cursor).collect()
    assert [p.sid for p in rest] == [sid("UT", n) for n in range(1200, 1500)]


def _token_of(length: int) -> str:
    """A next_page_url of exactly ``length`` characters, as the client sends it."""
    head = participants_url() + "?PageSize=5&Page=1&PageToken=PT"
    return head + "a" * (length - len(head))


async def test_a_next_page_url_longer_than_the_bound_fails_the_stream_unrequested(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    too_long = _token_of(MAX_PAGE_URL_LENGTH + 1)
    mock_http.get(participants_url(), payload=page_body(range(5), next_page_url=too_long))
    async with FlexClient(**credentials, rate_limit=None) as client:
        got = await sids_until(
            InvalidResponseError, aiter(client.participants(KD, UO)), match="longer than 4096"
        )
    assert len(got) == 5  # the page before it is delivered
    assert request_count(mock_http) == 1


async def test_the_cursor_of_a_page_at_the_longest_url_followed_resumes_there(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    longest = _token_of(MAX_PAGE_URL_LENGTH)
    first = participants_url() + "?PageSize=5"
    mock_http.get(first, payload=page_body(range(5), next_page_url=longest))
    mock_http.get(longest, payload=page_body(range(5, 10)))
    async with FlexClient(**credentials, rate_limit=None) as client:
        async with client.participants(KD, UO, page_size=5, limit=7) as stream:
            await stream.collect()
        assert stream.cursor is not None
        mock_http.get(longest, payload=page_body(range(5, 10)))
        rest = await client.participants(KD, UO, cursor=stream.cursor).collect()
    assert [p.sid for p in rest] == [sid("UT", n) for n in range(7, 10)]


def test_the_longest_base_url_gives_cursors_its_client_takes_back() -> None:
    path = "/p" * ((MAX_BASE_URL_LENGTH - len(str(ORIGIN))) // 2)
    origin = build_base_url(str(ORIGIN) + path, None, None)
    first = page_url(origin, *CHANNEL, page_size=1000)
    cursor = encode_cursor(first, 7, origin=origin, channel=CHANNEL)
    assert resume(cursor, origin, CHANNEL, page_size=None) == (first, 7)


_URL_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
_NEXT_PAGE_URLS = st.builds(
    lambda start, text, pad: start + text + "a" * pad,
    st.sampled_from(["?PageToken=", "Participants?", participants_url() + "?", "./?", "?a&b="]),
    _URL_TEXT,
    st.integers(0, MAX_PAGE_URL_LENGTH + 50),
)


def _followed(next_page_url: str) -> URL | None:
    """The URL a stream fetches after its first page for ``next_page_url``, if it takes it."""

    async def unused(url: URL) -> Any:
        raise AssertionError("nothing is fetched")

    try:
        return _Pager(unused, FIRST_URL, None)._follow(FIRST_URL, next_page_url)
    except FlexError:
        return None


@settings(max_examples=300, deadline=None)
@given(
    next_page_url=_NEXT_PAGE_URLS,
    skip=st.integers(0, 10**7),
    page_size=st.none() | st.integers(1, 1000),
)
def test_every_cursor_a_stream_can_give_is_taken_back_by_its_client(
    next_page_url: str, skip: int, page_size: int | None
) -> None:
    url = _followed(next_page_url)
    assume(url is not None)
    assert url is not None
    cursor = encode_cursor(url, skip, origin=ORIGIN, channel=CHANNEL)
    assert resume(cursor, ORIGIN, CHANNEL, page_size=None) == (url, skip)
    if page_size is None:
        return
    try:
        resized, _ = resume(cursor, ORIGIN, CHANNEL, page_size=page_size)
    except InvalidArgumentError as refused:
        assert "page_size cannot change" in str(refused)  # noqa: PT017 - the one other outcome
        return
    # The page a resumed stream fetches first is one whose cursor comes back too.
    assert resized is not None
    again = encode_cursor(resized, skip, origin=ORIGIN, channel=CHANNEL)
    assert resume(again, ORIGIN, CHANNEL, page_size=None) == (resized, skip)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)
_FORGED = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(_b64),
    _JSON.map(lambda value: _b64(json.dumps(value).encode())),
    # Every field present, each any JSON, with a checksum that matches.
    st.fixed_dictionaries(dict.fromkeys(("v", "e", "o", "i", "c", "u", "s"), _JSON)).map(
        lambda fields: _b64(json.dumps({**fields, "k": _checksum(fields)}).encode())
    ),
)


@settings(max_examples=500, deadline=None)
@given(forged=_FORGED)
def test_a_string_no_stream_gave_is_refused_as_an_invalid_argument_only(forged: str) -> None:
    with pytest.raises(InvalidArgumentError, match="cursor refused"):
        resume(forged, ORIGIN, CHANNEL, page_size=None)
