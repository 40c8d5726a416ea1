"""Per-call control: ``timeout=``, ``retry=`` and ``deadline=`` on every public call.

The timing tests run in virtual time against the emulator: its latency and the client's
timers share one exact clock, so "the call failed at t = 2.0" is a fact, not a race.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from aioresponses import aioresponses

from flex_participants import (
    ChannelResult,
    ClientClosedError,
    DeadlineExceededError,
    FlexClient,
    InvalidArgumentError,
    ServerError,
    TransportError,
)
from flex_participants import RetryPolicy as Policy
from flex_participants.emulator import Fault, FlexEmulator

from .helpers import KD, UO, Credentials, in_virtual_time, page_body, participants_url, twilio_error
from .server import sids_until


# A wait of exactly `seconds` before every retry, for exact times.
def steady(seconds: float, attempts: int = 10) -> Policy:
    return Policy(
        max_attempts=attempts, backoff_base=seconds, backoff_max=seconds, random=lambda: 1.0
    )


def emulated(
    test: Callable[[FlexEmulator, FlexClient], Coroutine[Any, Any, None]],
    *,
    latency: float = 0.0,
    **options: Any,
) -> None:
    """Run ``test(emulator, client)`` in virtual time, the client pointed at the emulator."""

    async def main() -> None:
        async with FlexEmulator(seed=7, latency=latency) as emulator:
            options.setdefault("rate_limit", None)
            async with FlexClient(**emulator.client_kwargs(), **options) as client:
                await test(emulator, client)

    in_virtual_time(main)


def now() -> float:
    return asyncio.get_running_loop().time()


# -- retry= and timeout= ------------------------------------------------------------------


async def test_a_per_call_retry_overrides_the_clients_for_that_call_only(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    busy = {"status": 503, "payload": twilio_error(503, 20503, "busy")}
    mock_http.get(participants_url(), **busy)
    mock_http.get(participants_url(), **busy)
    mock_http.get(participants_url(), payload=page_body(range(3)))
    async with FlexClient(**credentials, retry=Policy(backoff_base=0.0)) as client:
        with pytest.raises(ServerError) as raised:
            await client.fetch_page(KD, UO, retry=Policy(max_attempts=1))
        page = await client.fetch_page(KD, UO)  # the client's policy again: one retry
    assert raised.value.attempts == 1
    assert len(page.participants) == 3
    assert client.requests_sent == 3


def test_a_per_call_timeout_bounds_each_attempt_of_that_call_only() -> None:
    async def test(emulator: FlexEmulator, client: FlexClient) -> None:
        kd, uo = emulator.add_channel(participants=3)
        started = now()
        with pytest.raises(TransportError):
            await client.fetch_page(kd, uo, timeout=1.0, retry=Policy(max_attempts=1))
        assert now() - started == pytest.approx(1.0)
        page = await client.fetch_page(kd, uo)  # the client's 30 s are enough for 5 s
        assert len(page.participants) == 3

    emulated(test, latency=5.0)


def test_a_streams_timeout_and_retry_apply_to_each_of_its_pages() -> None:
    async def test(emulator: FlexEmulator, client: FlexClient) -> None:
        kd, uo = emulator.add_channel(participants=30)
        emulator.add_fault(Fault("status", status=503, times=1))
        stream = client.participants(kd, uo, page_size=10, retry=Policy(max_attempts=1))
        got = await sids_until(ServerError, aiter(stream), match="HTTP 503")
        assert got == []
        assert emulator.stats.requests == 1

    emulated(test)


# -- deadline= ----------------------------------------------------------------------------


def test_a_deadline_ends_a_call_that_keeps_retrying_with_the_typed_error() -> None:
    async def test(emulator: FlexEmulator, client: FlexClient) -> None:
        kd, uo = emulator.add_channel(participants=3)
        emulator.add_fault(Fault("status", status=503, times=100))
        started = now()
        with pytest.raises(DeadlineExceededError) as raised:
            await client.fetch_page(kd, uo, retry=steady(1.0), deadline=2.5)
        # Attempts at 0, 1 and 2; the wait to 3 would end past 2.5, so it fails at 2.
        assert now() - started == pytest.approx(2.0)
        assert raised.value.attempts == 3
        assert raised.value.deadline == 2.5
        assert isinstance(raised.value.__cause__, ServerError)
        assert emulator.stats.requests == 3

    emulated(test)


def test_a_backoff_that_would_end_past_the_deadline_fails_at_once_without_sleeping() -> None:
    async def test(emulator: FlexEmulator, client: FlexClient) -> None:
        kd, uo = emulator.add_channel(participants=3)
        emulator.add_fault(Fault("status", status=503, retry_after=100, times=1))
        started = now()
        with pytest.raises(DeadlineExceededError) as raised:
            await client.fetch_page(kd, uo, deadline=10)
        assert now() == started
        assert "wait to retry" in str(raised.value)
        assert client.retries == 0

    emulated(test)


def test_a_deadline_ends_a_request_still_under_way_and_leaves_no_cancellation() -> None:
    async def test(emulator: FlexEmulator, client: FlexClient) -> None:
        kd, uo = emulator.add_channel(participants=3)
        started = now()
        with pytest.raises(DeadlineExceededError) as raised:
            await client.fetch_page_url(
                f"/v1/Interactions/{kd}/Channels/{uo}/Participants", deadline=3
            )
        assert now() - started == pytest.approx(3.0)
        assert raised.value.attempts == 1
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0
        await asyncio.sleep(1)  # nothing is left to cancel this task

    emulated(test, latency=10.0)


def test_a_deadline_counts_the_wait_for_a_limiter_slot() -> None:
    async def test(emulator: FlexEmulator, client: FlexClient) -> None:
        kd, uo = emulator.add_channel(participants=3)
        holder = asyncio.create_task(client.fetch_page(kd, uo))
        await asyncio.sleep(0.5)
        with pytest.raises(DeadlineExceededError):
            await client.fetch_page(kd, uo, deadline=2)
        assert emulator.stats.requests == 1  # the one holding the slot
        assert len((await holder).participants) == 3
        assert client.limiter.in_flight == 0  # type: ignore[attr-defined]

    emulated(test, latency=10.0, max_concurrency=1)


def test_a_streams_deadline_runs_from_its_first_request_to_its_end() -> None:
    async def test(emulator: FlexEmulator, client: FlexClient) -> None:
        kd, uo = emulator.add_channel(participants=50)
        stream = client.participants(kd, uo, page_size=10, prefetch=0, deadline=2.5)
        await asyncio.sleep(100)  # not started by making the stream
        got = await sids_until(DeadlineExceededError, aiter(stream), match="ran out during")
        # Pages answered at 1 and 2; the third, under way at 2.5, was given up.
        assert len(got) == 20
        assert emulator.stats.requests == 3

    emulated(test, latency=1.0)


def test_a_stream_whose_deadline_passed_between_pages_sends_nothing_more() -> None:
    async def test(emulator: FlexEmulator, client: FlexClient) -> None:
        kd, uo = emulator.add_channel(participants=30)
        stream = client.participants(kd, uo, page_size=10, prefetch=0, deadline=5)
        pages = stream.pages()
        first = await anext(pages)
        await asyncio.sleep(10)  # the caller takes its time
        with pytest.raises(DeadlineExceededError) as raised:
            await anext(pages)
        assert len(first.participants) == 10
        assert raised.value.attempts == 0
        assert emulator.stats.requests == 1

    emulated(test)


def test_a_batch_deadline_applies_to_each_channel_and_fails_that_channel_only() -> None:
    async def test(emulator: FlexEmulator, client: FlexClient) -> None:
        short, long, other = (emulator.add_channel(participants=n) for n in (10, 30, 10))
        batch = client.participants_for_channels([short, long, other], page_size=10, deadline=2.5)
        results: dict[str, ChannelResult] = {r.channel_sid: r async for r in batch}
        assert [len(results[uo].participants) for _, uo in (short, other)] == [10, 10]
        assert isinstance(results[long[1]].error, DeadlineExceededError)

    emulated(test, latency=1.0)


# -- a deadline is neither close() nor an outside cancellation -----------------------------


def test_closing_the_client_during_a_deadline_raises_client_closed() -> None:
    async def test(emulator: FlexEmulator, client: FlexClient) -> None:
        kd, uo = emulator.add_channel(participants=3)
        task = asyncio.create_task(client.fetch_page(kd, uo, deadline=5))
        await asyncio.sleep(1)
        await client.close()
        with pytest.raises(ClientClosedError):
            await task
        await asyncio.sleep(10)  # the deadline's timer is gone with the call

    emulated(test, latency=10.0)


def test_an_outside_timeout_is_not_mistaken_for_a_deadline() -> None:
    async def test(emulator: FlexEmulator, client: FlexClient) -> None:
        kd, uo = emulator.add_channel(participants=3)
        with pytest.raises(TimeoutError) as raised:
            async with asyncio.timeout(1):
                await client.fetch_page(kd, uo, deadline=5)
        assert not isinstance(raised.value, DeadlineExceededError)
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0

    emulated(test, latency=10.0)


def test_an_outside_cancellation_at_the_deadline_goes_on_as_a_cancellation() -> None:
    async def test(emulator: FlexEmulator, client: FlexClient) -> None:
        kd, uo = emulator.add_channel(participants=3)
        task = asyncio.create_task(client.fetch_page(kd, uo, deadline=2))
        loop = asyncio.get_running_loop()
        await asyncio.sleep(1)
        # Cancelled from outside in the very callback round where the deadline runs out.
        loop.call_at(loop.time() + 1, task.cancel)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    emulated(test, latency=10.0)


# -- checked before any request -----------------------------------------------------------

CALLS: dict[str, Callable[[FlexClient, dict[str, Any]], Awaitable[object]]] = {
    "participants": lambda client, kw: client.participants(KD, UO, **kw).collect(),
    "fetch_page": lambda client, kw: client.fetch_page(KD, UO, **kw),
    "fetch_page_url": lambda client, kw: client.fetch_page_url(participants_url(), **kw),
    "participants_for_channels": lambda client, kw: _drain(
        client.participants_for_channels([(KD, UO)], **kw)
    ),
}


async def _drain(batch: Any) -> list[object]:
    return [result async for result in batch]


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": -1.0},
        {"timeout": float("nan")},
        {"timeout": True},
        {"timeout": "5"},
        {"deadline": 0},
        {"deadline": float("inf")},
        {"deadline": False},
        {"retry": 3},
    ],
    ids=repr,
)
async def test_bad_per_call_options_are_refused_before_any_request(
    mock_http: aioresponses, credentials: Credentials, call: str, options: dict[str, Any]
) -> None:
    async with FlexClient(**credentials) as client:
        with pytest.raises(InvalidArgumentError):
            await CALLS[call](client, options)
    assert client.requests_sent == 0
    assert mock_http.requests == {}
