"""participants_for_channels: many channels under one limit, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
)
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from flex_participants import (
    ChannelBatch,
    ChannelResult,
    ClientClosedError,
    FlexClient,
    FlexError,
    InvalidArgumentError,
    InvalidResponseError,
    NotFoundError,
    Participant,
    UnsafeURLError,
)

from .helpers import KD, Credentials, assert_no_task_left, hold_requests, sid, twilio_error
from .server import PagedServer, Seen, idle_tasks, rewrite_next_page_url, settle

ClientFor = Callable[..., FlexClient]


async def run_batch(batch: ChannelBatch) -> list[ChannelResult]:
    async with batch:
        return [result async for result in batch]


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
    fast_done = hold_requests(paged_server, lambda seen: seen.channel_sid == slow)
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


async def run_slowly(
    server: PagedServer,
    client_for: ClientFor,
    *,
    channels: int,
    size: int,
    max_concurrency: int,
    **options: int,
) -> list[ChannelResult]:
    """A batch of ``channels`` new channels of ``size`` participants each, every response
    taking a moment, so that requests overlap."""
    pairs = [(KD, server.add_channel(n, size)) for n in range(channels)]

    async def hook(seen: Seen) -> None:
        await asyncio.sleep(0.002)

    server.hook = hook
    async with client_for(server, max_concurrency=max_concurrency) as client:
        return await run(client, pairs, **options)


async def test_requests_in_flight_never_exceed_the_client_limit(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    results = await run_slowly(
        paged_server, client_for, channels=20, size=25, max_concurrency=4, page_size=10
    )
    assert len(results) == 20
    assert paged_server.peak_in_flight == 4


async def test_a_smaller_concurrency_narrows_the_window(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    await run_slowly(
        paged_server, client_for, channels=10, size=5, max_concurrency=8, concurrency=2
    )
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
    release = hold_requests(paged_server, lambda seen: seen.channel_sid != fast)
    async with client_for(paged_server) as client:
        async for result in client.participants_for_channels([(KD, uo) for uo in [fast, *stuck]]):
            assert result.channel_sid == fast
            break
        gc.collect()
        await assert_no_task_left()
        release.set()


def test_a_non_iterable_input_is_refused_at_once(credentials: Credentials) -> None:
    client = FlexClient(**credentials)
    with pytest.raises(InvalidArgumentError, match="iterable"):
        client.participants_for_channels(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="concurrency"):
        client.participants_for_channels([], concurrency=0)


# -- a batch never loses a channel -----------------------------------------------------------


class FlakyLimiter:
    """A custom Limiter that raises ``error`` on every ``acquire`` for which ``fails()``."""

    def __init__(self, error: Exception, fails: Callable[[int], bool]) -> None:
        self._error = error
        self._fails = fails
        self.calls = 0

    async def acquire(self) -> object:
        self.calls += 1
        if self._fails(self.calls):
            raise self._error
        return None

    async def release(self, permit: object, *, throttled: bool) -> None:
        return None


async def test_a_custom_limiter_that_raises_fails_its_channels_and_never_the_batch(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    channels = [paged_server.add_channel(n, 5) for n in range(12)]
    limiter = FlakyLimiter(RuntimeError("redis is down"), lambda call: call % 3 == 0)
    async with client_for(paged_server, limiter=limiter, max_concurrency=4) as client:
        results = await run(client, [(KD, uo) for uo in channels])
    assert sorted(r.channel_sid for r in results) == sorted(channels)
    failed = [r for r in results if not r.ok]
    assert failed  # every third request failed
    for result in failed:
        assert isinstance(result.error, FlexError)
        assert isinstance(result.error.__cause__, RuntimeError)
        assert "redis is down" in str(result.error)
    assert all(len(r.participants) == 5 for r in results if r.ok)


async def test_any_exception_escaping_a_channel_becomes_that_channels_flex_error(
    credentials: Credentials,
) -> None:
    # A bug, not a FlexError: the channel fails with it as the cause; the others complete.
    async def collect(interaction_sid: str, channel_sid: str) -> tuple[Participant, ...]:
        if channel_sid.endswith("3"):
            raise KeyError("a bug")
        return ()

    pairs = [(KD, sid("UO", n)) for n in range(6)]
    async with ChannelBatch(pairs, collect, window=2) as batch:
        results = [r async for r in batch]
    assert sorted(r.channel_sid for r in results) == sorted(uo for _, uo in pairs)
    (broken,) = [r for r in results if not r.ok]
    assert broken.channel_sid == sid("UO", 3)
    assert isinstance(broken.error, FlexError)
    assert isinstance(broken.error.__cause__, KeyError)


@pytest.mark.parametrize(
    "next_page_url",
    ["https:///v1/x", "http:/v1/x", "mailto:x@y.z", "//elsewhere.example/v1", "http://[::1"],
)
async def test_a_hostile_next_page_url_fails_its_channel_only(
    paged_server: PagedServer, client_for: ClientFor, next_page_url: str
) -> None:
    good, hostile = paged_server.add_channel(1, 25), paged_server.add_channel(2, 25)
    rewrite_next_page_url(paged_server, hostile, lambda seen: next_page_url)
    original = paged_server.hook

    async def hook(seen: Seen) -> web.StreamResponse | None:
        return await original(seen) if seen.channel_sid == hostile and original else None

    paged_server.hook = hook
    async with client_for(paged_server) as client:
        results = await run(client, [(KD, good), (KD, hostile)], page_size=10)
    by_channel = {r.channel_sid: r for r in results}
    assert by_channel[good].ok
    assert len(by_channel[good].participants) == 25
    assert isinstance(by_channel[hostile].error, InvalidResponseError | UnsafeURLError)


async def test_a_retry_after_date_that_overflows_is_ignored_not_fatal(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 5)
    dates = iter(["Fri, 31 Dec 99999 23:59:59 GMT", "Mon, 01 Jan 0000 00:00:00 GMT"])

    async def hook(seen: Seen) -> web.Response | None:
        date = next(dates, None)
        if date is None:
            return None
        body = twilio_error(429, 20429, "slow down")
        return web.json_response(body, status=429, headers={"Retry-After": date})

    paged_server.hook = hook
    async with client_for(paged_server) as client:
        (result,) = await run(client, [(KD, uo)])
    assert result.ok
    assert len(result.participants) == 5
    assert len(paged_server.seen) == 3


async def consumer_after_the_first_result(
    client: FlexClient, channels: Iterable[tuple[str, str]] | AsyncIterable[tuple[str, str]]
) -> tuple[asyncio.Task[None], list[ChannelResult]]:
    """A task consuming a batch of ``channels``, returned once it has its first result; and
    the results it has had."""
    got: list[ChannelResult] = []
    first_in = asyncio.Event()

    async def consume() -> None:
        async with client.participants_for_channels(channels) as batch:
            async for result in batch:
                got.append(result)
                first_in.set()

    task = asyncio.create_task(consume())
    await first_in.wait()
    return task, got


async def test_closing_the_client_during_a_batch_raises_after_the_results_already_made(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    quick, held = paged_server.add_channel(1, 5), paged_server.add_channel(2, 5)
    release = hold_requests(paged_server, lambda seen: seen.channel_sid == held)
    client = client_for(paged_server)
    task, got = await consumer_after_the_first_result(client, [(KD, quick), (KD, held)])
    await client.close()
    async with asyncio.timeout(5):
        with pytest.raises(ClientClosedError, match="1 of the 2 channels started"):
            await task
    assert [r.channel_sid for r in got] == [quick]
    await assert_no_task_left()
    release.set()


async def test_a_batch_whose_worker_is_cancelled_from_outside_raises_instead_of_ending(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    channels = [paged_server.add_channel(n, 5) for n in range(3)]
    release = hold_requests(paged_server)
    async with client_for(paged_server) as client:
        batch = client.participants_for_channels([(KD, uo) for uo in channels])
        consumer = asyncio.create_task(run_batch(batch))
        await paged_server.wait_for_requests(3)
        (victim, *_) = sorted(idle_tasks(), key=lambda t: t.get_name())
        victim.cancel()  # what a careless shutdown handler might do
        release.set()
        with pytest.raises(FlexError, match="have no result"):
            await consumer


async def test_three_channels_under_a_huge_window_start_a_handful_of_tasks(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    channels = [paged_server.add_channel(n, 5) for n in range(3)]
    loop = asyncio.get_running_loop()
    created: list[asyncio.Future[Any]] = []
    default_factory = loop.get_task_factory()

    def recording_factory(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
    ) -> asyncio.Future[Any]:
        task = (
            default_factory(loop, coro)
            if default_factory is not None
            else asyncio.Task(coro, loop=loop)
        )
        created.append(task)  # named only once the factory returns it
        return task

    async with client_for(paged_server, max_concurrency=100_000) as client:
        loop.set_task_factory(recording_factory)  # every task started, not just those alive
        try:
            results = await run(client, [(KD, uo) for uo in channels])
        finally:
            loop.set_task_factory(default_factory)
    assert len(results) == 3
    names = [task.get_name() for task in created if isinstance(task, asyncio.Task)]
    workers = [name for name in names if name.startswith("flex_participants batch worker")]
    assert len(workers) == 4  # one per channel, and one that found the input empty


@settings(max_examples=40, deadline=None)
@given(
    items=st.lists(
        st.one_of(
            st.integers(0, 5).map(lambda n: (KD, sid("UO", n))),  # known and unknown, repeated
            st.just(("KD-bad", "UO-bad")),
            st.just(("only one",)),
            st.integers(),
        ),
        max_size=25,
    ),
    window=st.integers(1, 8),
)
def test_a_batch_yields_exactly_one_result_per_input_item(items: list[Any], window: int) -> None:
    async def collect(interaction_sid: str, channel_sid: str) -> tuple[Participant, ...]:
        await asyncio.sleep(0)
        if not channel_sid.startswith("UO0"):
            raise InvalidArgumentError("bad")
        if channel_sid.endswith("5"):
            raise ValueError("unexpected")
        return ()

    async def main() -> list[ChannelResult]:
        async with ChannelBatch(items, collect, window=window) as batch:
            return [r async for r in batch]

    results = asyncio.run(main())
    assert len(results) == len(items)
    assert all(r.error is None or isinstance(r.error, FlexError) for r in results)


class CountingCollect:
    """A channel's work that takes ``seconds`` and counts how many run at once."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.running = self.peak = 0

    async def __call__(self, interaction_sid: str, channel_sid: str) -> tuple[Participant, ...]:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(self.seconds)
        self.running -= 1
        return ()


@given(
    items=st.integers(0, 60),
    windows=st.lists(st.integers(-2, 12), min_size=1, max_size=40),
    window=st.integers(1, 10),
)
def test_a_window_that_follows_a_changing_level_still_yields_one_result_per_input(
    items: int, windows: list[int], window: int
) -> None:
    # The level a batch follows grows and shrinks (and a limiter could say 0 or less) while
    # workers come and go: none may leave the input unread.
    wanted = itertools.cycle(windows)
    collect = CountingCollect()

    async def main() -> list[ChannelResult]:
        pairs = [(KD, sid("UO", n)) for n in range(items)]
        follow = lambda: next(wanted)  # noqa: E731
        async with ChannelBatch(pairs, collect, window=window, follow=follow) as batch:
            return [r async for r in batch]

    results = asyncio.run(main())
    assert sorted(r.channel_sid for r in results) == sorted(sid("UO", n) for n in range(items))
    assert collect.peak <= window


async def test_a_batch_works_on_as_many_channels_as_its_level_says() -> None:
    collect = CountingCollect(0.001)
    pairs = [(KD, sid("UO", n)) for n in range(30)]
    async with ChannelBatch(pairs, collect, window=10, follow=lambda: 3) as batch:
        results = [r async for r in batch]
    assert (len(results), collect.peak) == (30, 3)


async def test_closing_the_client_while_the_input_is_awaited_raises_not_ends(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    # A slow producer of channels: more will come, so a close now cuts the batch short.
    first, second = paged_server.add_channel(1, 5), paged_server.add_channel(2, 5)
    more = asyncio.Event()

    async def channels() -> AsyncIterator[tuple[str, str]]:
        yield (KD, first)
        await more.wait()
        yield (KD, second)

    client = client_for(paged_server, max_concurrency=1)
    task, got = await consumer_after_the_first_result(client, channels())
    await settle()
    await client.close()
    async with asyncio.timeout(5):
        with pytest.raises(ClientClosedError):
            await task
    assert [r.channel_sid for r in got] == [first]


async def test_a_batch_whose_input_read_is_cancelled_from_outside_raises_instead_of_ending(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 5)
    more = asyncio.Event()

    async def channels() -> AsyncIterator[tuple[str, str]]:
        yield (KD, uo)
        await more.wait()
        yield (KD, uo)

    async with client_for(paged_server) as client:
        batch = client.participants_for_channels(channels(), concurrency=1)
        consumer = asyncio.create_task(run_batch(batch))
        await paged_server.wait_for_requests(1)
        await settle()
        (reader,) = idle_tasks()  # the one worker, waiting on the input
        reader.cancel()
        with pytest.raises(FlexError, match="not read to its end"):
            await consumer
