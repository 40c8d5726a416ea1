"""ParticipantStream: paging, prefetch, limits and cleanup, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from flex_participants import (
    ClientClosedError,
    FlexClient,
    FlexError,
    InvalidArgumentError,
    InvalidResponseError,
    NotFoundError,
    ParticipantPage,
    ParticipantStream,
    UnsafeURLError,
)

from .helpers import KD, assert_no_task_left, hold_requests, sid, twilio_error
from .server import PagedServer, Seen, idle_tasks, rewrite_next_page_url, settle, sids_until

ClientFor = Callable[..., FlexClient]


def sids(numbers: range) -> list[str]:
    return [sid("UT", n) for n in numbers]


async def streamed(
    server: PagedServer, client_for: ClientFor, uo: str, **options: Any
) -> list[str | None]:
    """The SIDs a stream of ``uo`` with ``options`` yields, from a client of its own."""
    async with client_for(server) as client:
        return [p.sid async for p in client.participants(KD, uo, **options)]


def hold_pages_from(server: PagedServer, first_held: int) -> asyncio.Event:
    """Hold every request for page ``first_held`` and after until the returned event is set."""
    return hold_requests(server, lambda seen: seen.page >= first_held)


def channel_held_after_page_0(server: PagedServer) -> tuple[str, asyncio.Event]:
    """A channel of 100 whose requests for page 1 and after are held until the returned event
    is set."""
    return server.add_channel(1, 100), hold_pages_from(server, 1)


# -- order and completeness ----------------------------------------------------------------


async def test_yields_every_participant_once_in_server_order_across_many_pages(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 1234)
    got = await streamed(paged_server, client_for, uo)
    assert got == sids(range(1234))
    assert [s.page for s in paged_server.seen] == list(range(25))


async def test_anext_and_async_for_can_be_mixed_without_losing_or_repeating(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 25)
    async with client_for(paged_server) as client:
        stream = client.participants(KD, uo, page_size=10)
        async with stream:
            first = [(await anext(stream)).sid for _ in range(12)]
            rest = [p.sid async for p in stream]
    assert first + rest == sids(range(25))


async def test_an_empty_channel_yields_nothing_after_one_request(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 0)
    async with client_for(paged_server) as client:
        assert await client.participants(KD, uo).collect() == []
    assert len(paged_server.seen) == 1


async def test_pages_after_the_first_are_requested_by_next_page_url_verbatim(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 120)
    async with client_for(paged_server) as client:
        await client.participants(KD, uo, page_size=50).collect()
    assert [s.query for s in paged_server.seen] == [
        {"PageSize": "50"},
        {"PageSize": "50", "Page": "1", "PageToken": "PT1x"},
        {"PageSize": "50", "Page": "2", "PageToken": "PT2x"},
    ]


async def test_pages_yields_whole_pages_with_their_meta(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 25)
    async with client_for(paged_server) as client:
        pages = [page async for page in client.participants(KD, uo, page_size=10).pages()]
    assert [len(p.participants) for p in pages] == [10, 10, 5]
    assert [p.meta.page for p in pages] == [0, 1, 2]
    assert pages[-1].meta.next_page_url is None
    assert all(isinstance(p, ParticipantPage) for p in pages)


# -- limit and page size -------------------------------------------------------------------


async def test_without_page_size_no_page_size_is_sent(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 10)
    async with client_for(paged_server) as client:
        await client.participants(KD, uo).collect()
    assert paged_server.seen[0].query == {}


async def test_a_limit_smaller_than_a_page_becomes_the_page_size(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 500)
    got = await streamed(paged_server, client_for, uo, limit=7)
    assert got == sids(range(7))
    assert [s.query for s in paged_server.seen] == [{"PageSize": "7"}]


async def test_a_limit_requests_only_the_pages_it_needs(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 1000)
    got = await streamed(paged_server, client_for, uo, limit=120)
    assert got == sids(range(120))
    assert [s.page for s in paged_server.seen] == [0, 1, 2]
    assert paged_server.seen[0].query == {}


async def test_a_limit_trims_the_last_of_the_pages(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 100)
    async with client_for(paged_server) as client:
        pages = [p async for p in client.participants(KD, uo, page_size=10, limit=25).pages()]
    assert [len(p.participants) for p in pages] == [10, 10, 5]


async def test_a_limit_of_zero_sends_nothing(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 100)
    async with client_for(paged_server) as client:
        assert await client.participants(KD, uo, limit=0).collect() == []
    assert paged_server.seen == []


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("KD123", sid("UO", 1)), {}, "interaction_sid"),
        ((KD, "UT" + "0" * 32), {}, "channel_sid"),
        ((KD, sid("UO", 1)), {"page_size": 0}, "page_size"),
        ((KD, sid("UO", 1)), {"page_size": 1001}, "page_size"),
        ((KD, sid("UO", 1)), {"limit": -1}, "limit"),
        ((KD, sid("UO", 1)), {"prefetch": -1}, "prefetch"),
    ],
)
async def test_bad_arguments_raise_value_error_from_the_call_before_any_request(
    paged_server: PagedServer,
    client_for: ClientFor,
    args: tuple[str, str],
    kwargs: dict[str, Any],
    match: str,
) -> None:
    async with client_for(paged_server) as client:
        with pytest.raises(InvalidArgumentError, match=match) as caught:
            client.participants(*args, **kwargs)
    assert isinstance(caught.value, ValueError)
    assert paged_server.seen == []


# -- prefetch ------------------------------------------------------------------------------


async def test_the_next_page_is_requested_while_the_caller_consumes_the_current_one(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 30)
    next_requested = asyncio.Event()

    async def hook(seen: Seen) -> None:
        if seen.page == 1:
            next_requested.set()

    paged_server.hook = hook
    async with client_for(paged_server) as client:
        stream = client.participants(KD, uo, page_size=10)
        async with stream:
            async for p in stream:
                if p.sid == sid("UT", 0):
                    paged_server.events.append("caller started page 0")
                    # Still inside page 0: page 1 must be on its way without us asking.
                    await asyncio.wait_for(next_requested.wait(), timeout=10)
                if p.sid == sid("UT", 9):
                    paged_server.events.append("caller finished page 0")
    events = paged_server.events
    assert events.index("request 0001 page 1") < events.index("caller finished page 0")
    assert events.index("caller started page 0") < events.index("request 0001 page 1")


async def test_a_page_already_here_lets_the_next_request_start_before_the_caller_gets_it(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    # The prefetch is a page ahead and waits for the caller to ask for it: the request after
    # it must start before the caller has the page, or it waits for all the caller does with
    # that page, and the prefetch hides nothing.
    uo = paged_server.add_channel(1, 30)
    events: list[str] = []
    page_1_answered = asyncio.Event()

    class Recording:
        def __init__(self) -> None:
            self.started = self.answered = 0

        async def acquire(self) -> object:
            events.append(f"request {self.started} starts")
            self.started += 1
            return None

        async def release(self, permit: object, *, throttled: bool) -> None:
            self.answered += 1
            if self.answered == 2:
                page_1_answered.set()

    async with client_for(paged_server, limiter=Recording()) as client:
        stream = client.participants(KD, uo, page_size=10, prefetch=1)
        async with stream:
            async for p in stream:
                if p.sid == sid("UT", 9):  # the last of page 0: page 1 is on its way
                    await page_1_answered.wait()
                    await settle()  # page 1 is in hand, and the prefetch waits
                    assert events == ["request 0 starts", "request 1 starts"]
                if p.sid == sid("UT", 10):
                    events.append("caller gets page 1")
    assert events.index("request 2 starts") < events.index("caller gets page 1")


@pytest.mark.parametrize("prefetch", [1, 3])
async def test_prefetch_keeps_exactly_that_many_pages_ahead_and_no_more(
    paged_server: PagedServer, client_for: ClientFor, prefetch: int
) -> None:
    uo = paged_server.add_channel(1, 100)
    async with client_for(paged_server) as client:
        stream = client.participants(KD, uo, page_size=10, prefetch=prefetch)
        async with stream:
            await anext(stream)
            await paged_server.wait_for_requests(1 + prefetch)
            await asyncio.sleep(0.05)  # room for a wrong further request to show up
            assert [s.page for s in paged_server.seen] == list(range(1 + prefetch))


async def test_prefetch_zero_requests_a_page_only_when_asked(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 30)
    async with client_for(paged_server) as client:
        stream = client.participants(KD, uo, page_size=10, prefetch=0)
        await anext(stream)
        await asyncio.sleep(0.05)
        assert len(paged_server.seen) == 1
        assert idle_tasks() == set()
        rest = [p.sid async for p in stream]
    assert rest == sids(range(1, 30))


# -- errors and cleanup ---------------------------------------------------------------------


async def test_an_error_page_comes_after_every_participant_before_it(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 100)

    async def hook(seen: Seen) -> web.Response | None:
        if seen.page == 2:
            return web.json_response(twilio_error(404, 20404, "gone"), status=404)
        return None

    paged_server.hook = hook
    async with client_for(paged_server) as client:
        got = await sids_until(
            NotFoundError, client.participants(KD, uo, page_size=10), match="gone"
        )
        await assert_no_task_left()
    assert got == sids(range(20))


async def delivered_before(
    server: PagedServer,
    client_for: ClientFor,
    uo: str,
    error: type[FlexError],
    match: str,
    **options: Any,
) -> list[str | None]:
    """The SIDs a stream of ``uo`` in pages of 10 delivers before it fails with ``error``
    (failing the test if it does not)."""
    async with client_for(server) as client:
        return await sids_until(
            error, client.participants(KD, uo, page_size=10, **options), match=match
        )


async def assert_next_page_url_refused(
    server: PagedServer,
    client_for: ClientFor,
    next_page_url: Callable[[Seen], str | None],
    error: type[FlexError],
    match: str,
    **options: Any,
) -> None:
    """A stream of a channel of 30, whose pages name ``next_page_url(seen)`` as the next,
    delivers the first page of 10 whole, then fails with ``error``, and requests nothing after
    that page."""
    uo = server.add_channel(1, 30)
    rewrite_next_page_url(server, uo, next_page_url)
    got = await delivered_before(server, client_for, uo, error, match, **options)
    assert got == sids(range(10))
    assert len(server.seen) == 1


async def test_a_next_page_url_pointing_back_at_its_own_page_is_an_invalid_response(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    await assert_next_page_url_refused(
        paged_server,
        client_for,
        lambda seen: str(seen.request.url),
        InvalidResponseError,
        "leads back to a page already fetched",
    )


@pytest.mark.parametrize("bad", ["http://[::1", "http://127.0.0.1:99999/x"])
async def test_a_next_page_url_that_is_not_a_url_is_an_invalid_response(
    paged_server: PagedServer, client_for: ClientFor, bad: str
) -> None:
    await assert_next_page_url_refused(
        paged_server,
        client_for,
        lambda seen: bad,
        InvalidResponseError,
        "next_page_url is not a URL",
        prefetch=0,
    )


def page_url(server: PagedServer, seen: Seen, page: int, **query: str) -> str:
    """The URL of page ``page`` of the channel ``seen`` asked for, as the server spells it."""
    params = {"PageSize": seen.query["PageSize"], "Page": str(page), "PageToken": f"PT{page}x"}
    params.update(query)
    return f"{server.base_url}{seen.request.path}?" + "&".join(
        f"{k}={v}" for k, v in params.items()
    )


@pytest.mark.parametrize("period", [1, 2, 3, 5])
@pytest.mark.parametrize("prefetch", [0, 1, 3])
async def test_a_paging_cycle_of_any_period_fails_at_the_first_repeat_with_nothing_repeated(
    paged_server: PagedServer, client_for: ClientFor, period: int, prefetch: int
) -> None:
    # Pages 1 .. period each name the next, and the last names page 1 again.
    uo = paged_server.add_channel(1, 100)
    rewrite_next_page_url(
        paged_server, uo, lambda seen: page_url(paged_server, seen, seen.page % period + 1)
    )
    got = await delivered_before(
        paged_server,
        client_for,
        uo,
        InvalidResponseError,
        "leads back to a page already fetched",
        prefetch=prefetch,
    )
    assert got == sids(range(10 * (period + 1)))
    assert [s.page for s in paged_server.seen] == list(range(period + 1))


@pytest.mark.parametrize("prefetch", [0, 1])
async def test_a_cycle_back_to_the_first_page_by_another_url_delivers_nothing_twice(
    paged_server: PagedServer, client_for: ClientFor, prefetch: int
) -> None:
    # The first page was asked for without Page or PageToken; the server names it again as
    # Page=0&PageToken=...: no URL says it is the same page, its participants do.
    uo = paged_server.add_channel(1, 100)
    rewrite_next_page_url(
        paged_server, uo, lambda seen: page_url(paged_server, seen, (seen.page + 1) % 3)
    )
    got = await delivered_before(
        paged_server, client_for, uo, InvalidResponseError, "already delivered", prefetch=prefetch
    )
    assert got == sids(range(30))
    assert [s.page for s in paged_server.seen] == [0, 1, 2, 0]


RESPELLINGS: dict[str, Callable[[PagedServer, Seen], str]] = {
    "query reordered": lambda server, seen: (
        f"{server.base_url}{seen.request.path}?PageToken=PT1x&Page=1&PageSize=10"
    ),
    "relative": lambda server, seen: f"{seen.request.path}?PageSize=10&Page=1&PageToken=PT1x",
    "with a fragment": lambda server, seen: page_url(server, seen, 1) + "#again",
    "percent-encoded": lambda server, seen: page_url(server, seen, 1).replace(
        "Participants", "Particip%61nts"
    ),
    "same token, other page size": lambda server, seen: page_url(server, seen, 1, PageSize="20"),
}


@pytest.mark.parametrize("spelling", RESPELLINGS.values(), ids=RESPELLINGS.keys())
async def test_a_page_spelled_another_way_is_still_the_same_page(
    paged_server: PagedServer, client_for: ClientFor, spelling: Callable[[PagedServer, Seen], str]
) -> None:
    uo = paged_server.add_channel(1, 100)
    rewrite_next_page_url(
        paged_server,
        uo,
        lambda seen: (
            page_url(paged_server, seen, 1) if seen.page == 0 else spelling(paged_server, seen)
        ),
    )
    got = await delivered_before(
        paged_server, client_for, uo, InvalidResponseError, "already fetched"
    )
    assert got == sids(range(20))
    assert [s.page for s in paged_server.seen] == [0, 1]


async def test_a_relative_next_page_url_resolves_against_the_pages_own_url(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    # "Participants?..." is relative to .../Channels/UO.../Participants (RFC 3986), not to
    # the origin's root, where it would name /Participants.
    uo = paged_server.add_channel(1, 25)
    rewrite_next_page_url(
        paged_server,
        uo,
        lambda seen: None if seen.page == 2 else f"Participants?PageSize=10&Page={seen.page + 1}",
    )
    got = await streamed(paged_server, client_for, uo, page_size=10)
    assert got == sids(range(25))
    assert {s.request.path for s in paged_server.seen} == {
        f"/v1/Interactions/{KD}/Channels/{uo}/Participants"
    }


@pytest.mark.parametrize(
    "elsewhere",
    [
        "/v1/Interactions/{kd}/Channels/{other}/Participants?PageSize=10&Page=1",
        "/v1/Interactions/{kd}/Channels/{uo}?Page=1",
        "/v1/Interactions/{kd}/Channels/{uo}/Participants/UT{zeros}?Page=1",
        "/v2/Interactions/{kd}/Channels/{uo}/Participants?Page=1",
        "../{other}/Participants?Page=1",
    ],
)
async def test_a_next_page_url_for_another_channel_or_endpoint_is_refused_unrequested(
    paged_server: PagedServer, client_for: ClientFor, elsewhere: str
) -> None:
    other = paged_server.add_channel(2, 30)
    await assert_next_page_url_refused(
        paged_server,
        client_for,
        lambda seen: elsewhere.format(kd=KD, uo=seen.channel_sid, other=other, zeros="0" * 32),
        InvalidResponseError,
        "not to this channel's participants",
    )


@pytest.mark.parametrize(
    "no_host",
    [
        "http:/v1/Interactions/x/Channels/y/Participants",
        "https:///v1/Interactions/x/Channels/y/Participants",
        "https:v1/Interactions",
        "mailto:security@example.com",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "data:text/plain,hello",
    ],
)
async def test_a_next_page_url_with_a_scheme_and_no_host_is_unsafe_and_not_requested(
    paged_server: PagedServer, client_for: ClientFor, no_host: str
) -> None:
    await assert_next_page_url_refused(
        paged_server, client_for, lambda seen: no_host, UnsafeURLError, "URL without a host"
    )


async def test_a_scheme_relative_next_page_url_to_another_host_is_unsafe_and_not_sent(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    await assert_next_page_url_refused(
        paged_server,
        client_for,
        lambda seen: "//evil.example/v1/x?Page=1",
        UnsafeURLError,
        "evil.example",
    )


@pytest.mark.parametrize("field", ["channel_sid", "interaction_sid"])
async def test_a_page_whose_participants_name_another_channel_fails_without_retry(
    paged_server: PagedServer, client_for: ClientFor, field: str
) -> None:
    uo = paged_server.add_channel(1, 30)

    async def hook(seen: Seen) -> web.Response | None:
        if seen.page != 1:
            return None
        body = paged_server._page(seen.request, uo, seen.page)
        body["participants"][3][field] = sid(
            field[:2].upper() if field == "channel_sid" else "KD", 9
        )
        return web.json_response(body)

    paged_server.hook = hook
    got = await delivered_before(
        paged_server,
        client_for,
        uo,
        InvalidResponseError,
        r"not a page of this channel: participants\[3\] belongs to",
    )
    assert got == sids(range(10))
    assert [s.page for s in paged_server.seen].count(1) == 1  # not retried


async def test_participants_with_null_or_differently_cased_sids_belong_to_the_channel(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 3)

    async def hook(seen: Seen) -> web.Response:
        body = paged_server._page(seen.request, uo, seen.page)
        body["participants"][0]["channel_sid"] = None
        body["participants"][1]["interaction_sid"] = None
        body["participants"][2]["channel_sid"] = "UO" + uo[2:].upper()
        return web.json_response(body)

    paged_server.hook = hook
    got = await streamed(paged_server, client_for, uo)
    assert got == sids(range(3))


async def test_an_empty_next_page_url_ends_the_stream_as_null_does(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 25)
    rewrite_next_page_url(
        paged_server,
        uo,
        lambda seen: "" if seen.page == 2 else page_url(paged_server, seen, seen.page + 1),
    )
    got = await streamed(paged_server, client_for, uo, page_size=10)
    assert got == sids(range(25))


async def test_delivered_counts_only_what_the_caller_got_when_closed_mid_page(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 30)
    client = client_for(paged_server)
    stream = client.participants(KD, uo, page_size=10)
    await anext(stream)
    await anext(stream)
    await client.close()
    with pytest.raises(ClientClosedError, match="2 participants were delivered"):
        await anext(stream)
    assert stream.delivered == 2


async def test_a_stream_made_before_close_but_never_asked_keeps_raising_client_closed(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 5)
    client = client_for(paged_server)
    streams = [client.participants(KD, uo), client.participants(KD, uo, limit=0)]
    await client.close()
    for stream in streams:
        for _ in range(2):
            with pytest.raises(ClientClosedError):
                await anext(stream)
    assert paged_server.seen == []


async def test_an_outside_timeout_still_fires_when_close_and_a_failing_limiter_meet(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    # close() cancels the request; the limiter's release then raises instead: the caller's
    # own timeout must still end its task with TimeoutError, not a stray cancellation.
    uo = paged_server.add_channel(1, 30)
    release = hold_pages_from(paged_server, 0)

    class ReleaseFails:
        async def acquire(self) -> object:
            return None

        async def release(self, permit: object, *, throttled: bool) -> None:
            raise RuntimeError("the limiter's store went away")

    client = client_for(paged_server, limiter=ReleaseFails())

    async def consume() -> None:
        async with asyncio.timeout(0.5):
            with contextlib.suppress(FlexError):
                await client.participants(KD, uo, prefetch=0).collect()
            await asyncio.sleep(30)

    task = asyncio.create_task(consume())
    await paged_server.wait_for_requests(1)
    await client.close()
    with pytest.raises(TimeoutError):
        await task
    release.set()


@pytest.mark.parametrize("where", ["acquire", "release"])
async def test_a_custom_limiter_that_raises_fails_a_stream_with_a_flex_error(
    paged_server: PagedServer, client_for: ClientFor, where: str
) -> None:
    uo = paged_server.add_channel(1, 5)

    class Broken:
        async def acquire(self) -> object:
            if where == "acquire":
                raise KeyError("no slot")
            return None

        async def release(self, permit: object, *, throttled: bool) -> None:
            if where == "release":
                raise KeyError("no slot")

    async with client_for(paged_server, limiter=Broken()) as client:
        with pytest.raises(FlexError, match="the limiter") as caught:
            await client.participants(KD, uo).collect()
        with pytest.raises(FlexError, match="the limiter"):
            await client.fetch_page(KD, uo)
    assert isinstance(caught.value.__cause__, KeyError)


async def test_an_empty_page_ends_the_stream_even_if_it_names_a_next_page(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 0)

    rewrite_next_page_url(
        paged_server, uo, lambda seen: f"{paged_server.base_url}{seen.request.path}?Page=9"
    )
    async with client_for(paged_server) as client:
        assert await client.participants(KD, uo).collect() == []
    assert len(paged_server.seen) == 1


async def test_breaking_out_of_the_loop_cancels_the_prefetch(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo, release = channel_held_after_page_0(paged_server)  # the prefetch hangs until the test ends
    async with client_for(paged_server) as client:
        async for _ in client.participants(KD, uo, page_size=10):
            await paged_server.wait_for_requests(2)
            break
        gc.collect()
        await assert_no_task_left()
        release.set()


async def test_aclose_cancels_the_prefetch_and_ends_the_stream(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 100)
    async with client_for(paged_server) as client:
        stream = client.participants(KD, uo, page_size=10)
        await anext(stream)
        await stream.aclose()
        assert idle_tasks() == set()
        assert [p async for p in stream] == []
        await stream.aclose()


async def test_aclose_inside_the_loop_ends_the_loop_at_once(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 30)
    got: list[str | None] = []
    async with client_for(paged_server) as client:
        stream = client.participants(KD, uo, page_size=10)
        async for p in stream:
            got.append(p.sid)
            if len(got) == 4:
                await stream.aclose()
    assert got == sids(range(4))


async def test_cancelling_the_consumer_cancels_the_prefetch(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 100)
    first_page_in = asyncio.Event()
    release = hold_pages_from(paged_server, 1)

    async def consume(client: FlexClient) -> None:
        async for p in client.participants(KD, uo, page_size=10):
            if p.sid == sid("UT", 9):
                first_page_in.set()

    async with client_for(paged_server) as client:
        task = asyncio.create_task(consume(client))
        await first_page_in.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await assert_no_task_left()
        release.set()


async def test_closing_the_client_cancels_its_open_streams(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo, release = channel_held_after_page_0(paged_server)
    client = client_for(paged_server)
    stream = client.participants(KD, uo, page_size=10)
    await anext(stream)
    await client.close()
    assert idle_tasks() == set()
    release.set()
    del stream


# -- close and cancel from another task ---------------------------------------------------


async def consumer_waiting_for_page_1(
    server: PagedServer, stream: ParticipantStream
) -> tuple[asyncio.Task[None], list[str | None]]:
    """A task consuming ``stream``, returned once it has page 0 and waits for page 1."""
    got: list[str | None] = []
    page_0_in = asyncio.Event()

    async def consume() -> None:
        async for p in stream:
            got.append(p.sid)
            if len(got) == 10:
                page_0_in.set()

    task = asyncio.create_task(consume())
    await server.wait_for_requests(2)
    await page_0_in.wait()
    await settle()
    return task, got


@pytest.mark.parametrize("prefetch", [0, 1, 3])
async def test_closing_the_client_from_another_task_fails_a_waiting_consumer_at_once(
    paged_server: PagedServer, client_for: ClientFor, prefetch: int
) -> None:
    uo, release = channel_held_after_page_0(paged_server)
    client = client_for(paged_server)
    task, got = await consumer_waiting_for_page_1(
        paged_server, client.participants(KD, uo, page_size=10, prefetch=prefetch)
    )
    assert not task.done()
    await client.close()
    async with asyncio.timeout(5):  # a hang fails here, not the suite
        with pytest.raises(ClientClosedError, match="10 participants were delivered"):
            await task
    assert got == sids(range(10))
    await assert_no_task_left()
    assert client.limiter.in_flight == 0  # type: ignore[attr-defined]
    release.set()


@pytest.mark.parametrize("prefetch", [0, 1, 3])
async def test_aclose_from_another_task_ends_a_waiting_consumer_cleanly_at_once(
    paged_server: PagedServer, client_for: ClientFor, prefetch: int
) -> None:
    uo, release = channel_held_after_page_0(paged_server)
    async with client_for(paged_server) as client:
        stream = client.participants(KD, uo, page_size=10, prefetch=prefetch)
        task, got = await consumer_waiting_for_page_1(paged_server, stream)
        await stream.aclose()
        async with asyncio.timeout(5):
            await task  # the loop just ends: the stream was closed on purpose
        assert got == sids(range(10))
        assert idle_tasks() == set()
        assert [p async for p in stream] == []
        assert client.limiter.in_flight == 0  # type: ignore[attr-defined]
    release.set()


@pytest.mark.parametrize("call", ["a stream", "fetch_page"])
async def test_closing_the_client_ends_a_retry_that_sleeps_in_its_backoff(
    paged_server: PagedServer, client_for: ClientFor, call: str
) -> None:
    uo = paged_server.add_channel(1, 30)
    asked = asyncio.Event()

    async def hook(seen: Seen) -> web.Response:
        asked.set()
        return web.json_response(
            twilio_error(503, 20503, "busy"), status=503, headers={"Retry-After": "250"}
        )

    paged_server.hook = hook
    client = client_for(paged_server)
    work = (
        client.participants(KD, uo).collect() if call == "a stream" else client.fetch_page(KD, uo)
    )
    task: asyncio.Future[object] = asyncio.ensure_future(work)
    await asked.wait()
    await settle()
    await client.close()
    async with asyncio.timeout(5):
        with pytest.raises(ClientClosedError):
            await task


async def test_closing_the_client_ends_a_wait_for_a_limiter_slot(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    first, second = paged_server.add_channel(1, 30), paged_server.add_channel(2, 30)
    release = hold_pages_from(paged_server, 0)
    client = client_for(paged_server, max_concurrency=1)
    holder = asyncio.create_task(client.participants(KD, first).collect())
    await paged_server.wait_for_requests(1)
    waiter = asyncio.create_task(client.participants(KD, second).collect())
    await settle()
    assert client.limiter.in_flight == 1  # type: ignore[attr-defined]
    await client.close()
    async with asyncio.timeout(5):
        for task in (holder, waiter):
            with pytest.raises(ClientClosedError):
                await task
    assert len(paged_server.seen) == 1
    release.set()


async def test_a_cancelled_close_finishes_its_work_when_called_again(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo, release = channel_held_after_page_0(paged_server)
    client = client_for(paged_server)
    stream = client.participants(KD, uo, page_size=10, prefetch=2)
    await anext(stream)
    await paged_server.wait_for_requests(2)
    closing = asyncio.create_task(client.close())
    await asyncio.sleep(0)
    closing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await closing
    await client.close()
    assert client.closed
    assert idle_tasks() == set()
    assert client._session is None  # the session it made is closed, not abandoned
    release.set()


async def test_a_stream_that_had_ended_stays_ended_when_its_client_closes(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 5)
    client = client_for(paged_server)
    stream = client.participants(KD, uo)
    assert len([p async for p in stream]) == 5
    await client.close()
    assert [p async for p in stream] == []


async def test_a_stream_opened_after_its_client_closed_raises_client_closed(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 5)
    client = client_for(paged_server)
    await client.close()
    with pytest.raises(ClientClosedError):
        await client.participants(KD, uo).collect()
    assert paged_server.seen == []


async def test_a_second_task_iterating_a_stream_is_refused_and_the_first_loses_nothing(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 30)
    release = hold_pages_from(paged_server, 1)
    async with client_for(paged_server) as client:
        stream = client.participants(KD, uo, page_size=10, prefetch=0)
        task, got = await consumer_waiting_for_page_1(paged_server, stream)
        with pytest.raises(FlexError, match="already being iterated by another task"):
            await anext(stream)
        release.set()
        async with asyncio.timeout(5):
            await task
    assert got == sids(range(30))


async def test_two_tasks_taking_turns_on_one_stream_share_it_without_repeats(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 45)
    got: list[str | None] = []
    async with client_for(paged_server) as client:
        stream = client.participants(KD, uo, page_size=10)
        turn = asyncio.Lock()

        async def consume() -> None:
            while True:
                async with turn:
                    try:
                        got.append((await anext(stream)).sid)
                    except StopAsyncIteration:
                        return

        await asyncio.gather(consume(), consume(), consume())
    assert got == sids(range(45))


def test_a_client_used_from_a_second_event_loop_fails_clearly(credentials: Any) -> None:
    client = FlexClient(**credentials, base_url="http://127.0.0.1:9")
    with asyncio.Runner() as first:
        first.run(client.__aenter__())
        with asyncio.Runner() as second, pytest.raises(FlexError, match="another event loop"):
            second.run(client.participants(KD, "UO" + "0" * 32).collect())
        first.run(client.close())


# -- the shared limit -----------------------------------------------------------------------


async def test_streams_of_one_client_share_its_concurrency_limit(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    channels = [paged_server.add_channel(n, 40) for n in range(8)]
    gate = asyncio.Event()

    async def hook(seen: Seen) -> None:
        if paged_server.in_flight >= 3:
            gate.set()
        await asyncio.sleep(0.005)

    paged_server.hook = hook
    async with client_for(paged_server, max_concurrency=3) as client:
        results = await asyncio.gather(
            *(client.participants(KD, uo, page_size=10, prefetch=2).collect() for uo in channels)
        )
    assert [len(r) for r in results] == [40] * 8
    assert paged_server.peak_in_flight == 3
    assert gate.is_set()
