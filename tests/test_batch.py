"""participants_for_channels: many channels under one limit, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from flex_participants import (
    ChannelResult,
    FlexClient,
    InvalidArgumentError,
    NotFoundError,
)

from .helpers import KD, Credentials, sid
from .server import PagedServer, Seen, idle_tasks, settle

ClientFor = Callable[..., FlexClient]


async def run(client: FlexClient, channels: object, **options: int) -> list[ChannelResult]:
    async with client.participants_for_channels(channels, **options) as batch:  # type: ignore[arg-type]
        return [result async for result in batch]


async def test_every_channel_yields_one_result_with_all_its_participants(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    channels = {paged_server.add_channel(n, n * 7): n * 7 for n in range(1, 31)}
    async with client_for(paged_server, max_concurrency=5) as client:
        results = await run(client, [(KD, uo) for uo in channels], page_size=10)
    assert sorted(r.channel_sid for r in results) == sorted(channels)
    for result in results:
        assert result.ok
        assert [p.sid for p in result.participants] == [
            sid("UT", n) for n in range(channels[result.channel_sid])
        ]


async def test_results_arrive_in_completion_order(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    slow, fast = paged_server.add_channel(1, 5), paged_server.add_channel(2, 5)
    fast_done = asyncio.Event()

    async def hook(seen: Seen) -> None:
        if seen.channel_sid == slow:
            await fast_done.wait()

    paged_server.hook = hook
    async with client_for(paged_server) as client:
        async with client.participants_for_channels([(KD, slow), (KD, fast)]) as batch:
            first = await anext(batch)
            fast_done.set()
            second = await anext(batch)
    assert (first.channel_sid, second.channel_sid) == (fast, slow)


async def test_a_failing_channel_yields_its_error_and_the_batch_goes_on(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    good = paged_server.add_channel(1, 3)
    missing = sid("UO", 999)
    async with client_for(paged_server) as client:
        results = {r.channel_sid: r for r in await run(client, [(KD, missing), (KD, good)])}
    assert isinstance(results[missing].error, NotFoundError)
    assert results[missing].participants == ()
    assert not results[missing].ok
    assert len(results[good].participants) == 3


async def test_malformed_items_fail_their_own_result_only(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    good = paged_server.add_channel(1, 3)
    items: list[object] = [("KD-bad", good), "not a pair", (KD, good, "extra"), (KD, good)]
    async with client_for(paged_server) as client:
        results = await run(client, items)
    errors = [r for r in results if r.error is not None]
    assert len(errors) == 3
    assert all(isinstance(r.error, InvalidArgumentError) for r in errors)
    assert [len(r.participants) for r in results if r.ok] == [3]


async def test_accepts_an_async_iterable_of_channels(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    channels = [paged_server.add_channel(n, 4) for n in range(10)]

    async def pairs() -> AsyncIterator[tuple[str, str]]:
        for uo in channels:
            await asyncio.sleep(0)
            yield KD, uo

    async with client_for(paged_server, max_concurrency=3) as client:
        results = await run(client, pairs())
    assert sorted(r.channel_sid for r in results) == sorted(channels)


async def test_channels_are_pulled_only_as_capacity_frees_up(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 2)
    pulled = 0

    def endless() -> Iterator[tuple[str, str]]:
        nonlocal pulled
        while True:
            pulled += 1
            yield KD, uo

    async with client_for(paged_server, max_concurrency=4) as client:
        async with client.participants_for_channels(endless()) as batch:
            seen = 0
            async for _ in batch:
                seen += 1
                # In flight (4) + waiting for the caller (4) + the one being handed over.
                assert pulled <= seen + 4 + 4 + 1
                if seen == 50:
                    break
        assert idle_tasks() == set()


async def test_tasks_stay_bounded_by_the_window_however_long_the_input(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 1)
    peak_tasks = 0
    async with client_for(paged_server, max_concurrency=6) as client:
        async with client.participants_for_channels((KD, uo) for _ in range(300)) as batch:
            count = 0
            async for _ in batch:
                peak_tasks = max(peak_tasks, len(idle_tasks()))
                count += 1
    assert count == 300
    assert peak_tasks <= 6


async def test_requests_in_flight_never_exceed_the_client_limit(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    channels = [paged_server.add_channel(n, 25) for n in range(20)]

    async def hook(seen: Seen) -> None:
        await asyncio.sleep(0.002)

    paged_server.hook = hook
    async with client_for(paged_server, max_concurrency=4) as client:
        results = await run(client, [(KD, uo) for uo in channels], page_size=10)
    assert len(results) == 20
    assert paged_server.peak_in_flight == 4


async def test_a_smaller_concurrency_narrows_the_window(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    channels = [paged_server.add_channel(n, 5) for n in range(10)]

    async def hook(seen: Seen) -> None:
        await asyncio.sleep(0.002)

    paged_server.hook = hook
    async with client_for(paged_server, max_concurrency=8) as client:
        await run(client, [(KD, uo) for uo in channels], concurrency=2)
    assert paged_server.peak_in_flight <= 2


async def test_an_exception_of_the_input_comes_after_the_channels_under_way(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    channels = [paged_server.add_channel(n, 3) for n in range(3)]

    def broken() -> Iterator[tuple[str, str]]:
        for uo in channels:
            yield KD, uo
        raise RuntimeError("input went away")

    got: list[ChannelResult] = []

    async def consume(client: FlexClient) -> None:
        async with client.participants_for_channels(broken()) as batch:
            async for result in batch:
                got.append(result)

    async with client_for(paged_server) as client:
        with pytest.raises(RuntimeError, match="input went away"):
            await consume(client)
    assert sorted(r.channel_sid for r in got) == sorted(channels)


async def test_breaking_out_cancels_the_channels_still_running(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    fast = paged_server.add_channel(1, 1)
    stuck = [paged_server.add_channel(n, 1) for n in range(2, 6)]
    release = asyncio.Event()

    async def hook(seen: Seen) -> None:
        if seen.channel_sid != fast:
            await release.wait()

    paged_server.hook = hook
    async with client_for(paged_server) as client:
        async for result in client.participants_for_channels([(KD, uo) for uo in [fast, *stuck]]):
            assert result.channel_sid == fast
            break
        gc.collect()
        await settle()
        assert idle_tasks() == set()
        release.set()


def test_a_non_iterable_input_is_refused_at_once(credentials: Credentials) -> None:
    client = FlexClient(**credentials)
    with pytest.raises(InvalidArgumentError, match="iterable"):
        client.participants_for_channels(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="concurrency"):
        client.participants_for_channels([], concurrency=0)
