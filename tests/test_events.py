"""Hooks, events, stats() and trace_configs=, over loopback HTTP against the emulator."""

from __future__ import annotations

import asyncio
import itertools
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

import aiohttp
import pytest
import pytest_asyncio

import flex_participants._client
import flex_participants._events
from flex_participants import (
    AdaptiveLimiter,
    ClientClosedError,
    ClientStats,
    DeadlineExceededError,
    Event,
    FlexClient,
    FlexError,
    InvalidArgumentError,
    LimitChanged,
    NotFoundError,
    PageDelivered,
    RequestFailed,
    RequestSent,
    ResponseReceived,
    RetryPolicy,
    RetryScheduled,
    ServerError,
    StreamClosed,
    StreamOpened,
    Throttle,
    TransportError,
)
from flex_participants.emulator import Fault, FlexEmulator

from .helpers import in_virtual_time

NO_WAIT = RetryPolicy(backoff_base=0.0)
MISSING = ("KD" + "0" * 32, "UO" + "0" * 32)


class Recorder:
    """A hook that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[FlexEmulator]:
    async with FlexEmulator(seed=15) as running:
        yield running


@pytest.fixture
def client_of(emulator: FlexEmulator) -> Callable[..., FlexClient]:
    """A client of the emulator, unpaced (no rate) so that no limit moves but on a 429."""

    def build(**options: Any) -> FlexClient:
        options.setdefault("retry", NO_WAIT)
        options.setdefault("rate_limit", None)
        return FlexClient(**emulator.client_kwargs(), **options)

    return build


def first_page_url(emulator: FlexEmulator, kd: str, uo: str) -> str:
    return f"{emulator.base_url}/v1/Interactions/{kd}/Channels/{uo}/Participants"


class OneFetch(NamedTuple):
    """What `fetch_once` saw: the hook's events, the client (closed) and the page's URL."""

    hook: Recorder
    client: FlexClient
    url: str


async def fetch_once(
    emulator: FlexEmulator,
    client_of: Callable[..., FlexClient],
    *faults: Fault,
    participants: int = 3,
    **options: Any,
) -> OneFetch:
    """One `fetch_page` of a new channel through ``faults``, by a client with a hook."""
    kd, uo = emulator.add_channel(participants=participants)
    for fault in faults:
        emulator.add_fault(fault)
    hook = Recorder()
    async with client_of(hooks=[hook], **options) as client:
        await client.fetch_page(kd, uo)
    return OneFetch(hook, client, first_page_url(emulator, kd, uo))


# -- one request ---------------------------------------------------------------------------


async def test_a_success_is_a_request_sent_then_its_response_with_the_same_id(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    hook, _, url = await fetch_once(emulator, client_of)

    sent, received = hook.events
    assert isinstance(sent, RequestSent)
    assert sent == RequestSent(id=sent.id, method="GET", url=url, attempt=1, stream_id=None)
    assert isinstance(received, ResponseReceived)
    assert (received.id, received.method, received.url, received.attempt) == (
        sent.id,
        "GET",
        url,
        1,
    )
    assert received.status == 200
    assert received.stream_id is None


async def test_a_response_tells_its_size_twilio_request_id_and_concurrent_requests(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    kd, uo = emulator.add_channel(participants=3)
    hook = Recorder()
    async with client_of(hooks=[hook]) as client, aiohttp.ClientSession() as plain:
        await client.fetch_page(kd, uo)
        auth = {
            "Authorization": aiohttp.encode_basic_auth(emulator.account_sid, emulator.auth_token)
        }
        async with plain.get(first_page_url(emulator, kd, uo), headers=auth) as response:
            body = await response.read()

    [received] = hook.of(ResponseReceived)
    assert received.size == len(body)  # the same page, served alike
    assert received.request_id is not None
    assert received.request_id.startswith("RQ")
    assert received.concurrent_requests == 1
    assert received.elapsed >= 0


async def test_a_retried_503_is_its_response_a_retry_then_a_new_request(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    hook, _, url = await fetch_once(emulator, client_of, Fault("status", status=503, times=1))

    assert hook.kinds() == [
        "RequestSent",
        "ResponseReceived",
        "RetryScheduled",
        "RequestSent",
        "ResponseReceived",
    ]
    first, failed, retry, second, succeeded = hook.events
    assert isinstance(first, RequestSent)
    assert isinstance(failed, ResponseReceived)
    assert isinstance(retry, RetryScheduled)
    assert isinstance(succeeded, ResponseReceived)
    assert failed.status == 503
    assert (retry.id, retry.attempt, retry.delay) == (first.id, 1, 0.0)
    assert isinstance(retry.error, ServerError)
    assert retry.url == url
    assert isinstance(second, RequestSent)
    assert second.attempt == 2
    assert second.id != first.id
    assert (succeeded.id, succeeded.status) == (second.id, 200)


async def test_a_429_is_its_response_the_limit_lowered_then_a_retry(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    hook, _, _ = await fetch_once(
        emulator, client_of, Fault("status", status=429, times=1), max_concurrency=8
    )

    assert hook.kinds() == [
        "RequestSent",
        "ResponseReceived",
        "LimitChanged",
        "RetryScheduled",
        "RequestSent",
        "ResponseReceived",
    ]
    # Without a rate, a 429 halves the requests allowed in flight.
    assert hook.events[2] == LimitChanged(level=4, rate=None)
    assert [event.status for event in hook.of(ResponseReceived)] == [429, 200]


async def test_a_429_under_a_rate_tells_the_lowered_rate(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    hook, client, _ = await fetch_once(
        emulator, client_of, Fault("status", status=429, times=1), rate_limit=20.0
    )

    [changed] = hook.of(LimitChanged)
    assert changed.level == client.stats().level
    assert changed.rate is not None
    assert changed.rate < 20.0
    assert changed.rate == client.stats().rate


async def test_a_transport_error_ends_its_request_with_request_failed(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    hook, _, _ = await fetch_once(emulator, client_of, Fault("reset", times=1), participants=60)

    assert hook.kinds() == [
        "RequestSent",
        "RequestFailed",
        "RetryScheduled",
        "RequestSent",
        "ResponseReceived",
    ]
    sent, failed, retry = hook.events[:3]
    assert isinstance(sent, RequestSent)
    assert isinstance(failed, RequestFailed)
    assert isinstance(retry, RetryScheduled)
    assert failed.id == sent.id == retry.id
    assert isinstance(failed.error, TransportError)
    assert retry.error is failed.error


async def test_a_request_ended_by_close_fails_and_its_stream_closes(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    kd, uo = emulator.add_channel(participants=3)
    emulator.add_fault(Fault("slow", delay=30.0))
    hook = Recorder()
    sent = asyncio.Event()

    def wake(event: Event) -> None:
        if isinstance(event, RequestSent):
            sent.set()

    client = client_of(hooks=[hook, wake])
    collecting = asyncio.create_task(client.participants(kd, uo, prefetch=0).collect())
    await sent.wait()
    await client.close()
    with pytest.raises(ClientClosedError):
        await collecting

    assert hook.kinds() == ["StreamOpened", "RequestSent", "RequestFailed", "StreamClosed"]
    failed, closed = hook.events[2:]
    assert isinstance(failed, RequestFailed)
    assert isinstance(failed.error, asyncio.CancelledError)
    assert isinstance(closed, StreamClosed)
    assert isinstance(closed.error, ClientClosedError)


async def test_every_request_sent_ends_once_with_its_own_id_even_under_faults(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    channels = [emulator.add_channel(participants=120) for _ in range(4)]
    emulator.add_fault(Fault("status", status=503, times=2))
    emulator.add_fault(Fault("reset", times=2))
    hook = Recorder()
    async with client_of(hooks=[hook]) as client:
        async for result in client.participants_for_channels(channels, page_size=50):
            assert result.ok

    ends = [event for event in hook.events if isinstance(event, ResponseReceived | RequestFailed)]
    sent = hook.of(RequestSent)
    assert len(sent) == 4 * 3 + 4
    assert sorted(event.id for event in ends) == sorted(event.id for event in sent)
    assert len({event.id for event in sent}) == len(sent)
    for event in ends:
        [request] = [s for s in sent if s.id == event.id]
        assert hook.events.index(request) < hook.events.index(event)
        assert (request.url, request.attempt, request.stream_id) == (
            event.url,
            event.attempt,
            event.stream_id,
        )


# -- a stream ------------------------------------------------------------------------------


async def test_a_stream_tells_it_opened_each_page_delivered_and_that_it_closed(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    kd, uo = emulator.add_channel(participants=120)
    hook = Recorder()
    async with client_of(hooks=[hook]) as client:
        participants = await client.participants(kd, uo, page_size=50, prefetch=0).collect()

    assert len(participants) == 120
    opened = hook.events[0]
    assert isinstance(opened, StreamOpened)
    assert (opened.interaction_sid, opened.channel_sid) == (kd, uo)
    assert hook.kinds() == [
        "StreamOpened",
        *["RequestSent", "ResponseReceived", "PageDelivered"] * 3,
        "StreamClosed",
    ]
    assert hook.of(PageDelivered) == [
        PageDelivered(kd, uo, page=0, count=50, stream_id=opened.stream_id),
        PageDelivered(kd, uo, page=1, count=50, stream_id=opened.stream_id),
        PageDelivered(kd, uo, page=2, count=20, stream_id=opened.stream_id),
    ]
    assert {event.stream_id for event in hook.of(RequestSent)} == {opened.stream_id}
    assert hook.events[-1] == StreamClosed(opened.stream_id, kd, uo, delivered=120, error=None)


async def test_a_limit_inside_a_page_is_told_as_the_participants_delivered(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    kd, uo = emulator.add_channel(participants=120)
    hook = Recorder()
    async with client_of(hooks=[hook]) as client:
        await client.participants(kd, uo, page_size=50, limit=70, prefetch=0).collect()

    assert [event.count for event in hook.of(PageDelivered)] == [50, 20]
    [closed] = hook.of(StreamClosed)
    assert closed.delivered == 70


async def test_a_failed_stream_closes_with_its_error(
    client_of: Callable[..., FlexClient],
) -> None:
    hook = Recorder()
    async with client_of(hooks=[hook]) as client:
        with pytest.raises(NotFoundError):
            await client.participants(*MISSING).collect()

    [closed] = hook.of(StreamClosed)
    assert isinstance(closed.error, NotFoundError)
    assert closed.delivered == 0


async def test_a_stream_closed_by_its_client_closes_with_client_closed_error(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    kd, uo = emulator.add_channel(participants=120)
    hook = Recorder()
    client = client_of(hooks=[hook])
    stream = client.participants(kd, uo, page_size=50, prefetch=0)
    await anext(aiter(stream))
    await client.close()

    [closed] = hook.of(StreamClosed)
    assert isinstance(closed.error, ClientClosedError)
    assert closed.delivered == 1  # the participant handed over; the rest of the page was not


async def test_each_channel_of_a_batch_is_a_stream_of_its_own(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    channels = [emulator.add_channel(participants=10) for _ in range(3)]
    hook = Recorder()
    async with client_of(hooks=[hook]) as client:
        results = [result async for result in client.participants_for_channels(channels)]

    assert len(results) == 3
    opened = hook.of(StreamOpened)
    assert sorted((e.interaction_sid, e.channel_sid) for e in opened) == sorted(channels)
    assert len({event.stream_id for event in opened}) == 3
    closed = {event.stream_id: event for event in hook.of(StreamClosed)}
    assert set(closed) == {event.stream_id for event in opened}
    assert all(event.delivered == 10 and event.error is None for event in closed.values())


# -- hooks ---------------------------------------------------------------------------------


async def test_a_hook_that_raises_is_logged_with_its_traceback_and_the_request_succeeds(
    emulator: FlexEmulator,
    client_of: Callable[..., FlexClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    kd, uo = emulator.add_channel(participants=3)

    def broken(event: Event) -> None:
        raise RuntimeError("the hook is broken")

    after = Recorder()
    async with client_of(hooks=[broken, after]) as client:
        page = await client.fetch_page(kd, uo)

    assert len(page.participants) == 3
    assert after.kinds() == ["RequestSent", "ResponseReceived"]  # the next hook still hears
    errors = [r for r in caplog.records if r.name == "flex_participants"]
    assert [r.levelno for r in errors] == [logging.ERROR, logging.ERROR]
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in errors)
    assert "RequestSent" in errors[0].getMessage()


def test_async_hooks_are_refused() -> None:
    async def hook(event: Event) -> None:
        pass

    class Callback:
        async def __call__(self, event: Event) -> None:
            pass

    for refused in (hook, Callback()):
        with pytest.raises(InvalidArgumentError, match="async"):
            FlexClient("AC" + "0" * 32, "token", hooks=[refused])


@pytest.mark.parametrize("hooks", [print, ["not callable"], "print"])
def test_hooks_must_be_an_iterable_of_callables(hooks: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="hook"):
        FlexClient("AC" + "0" * 32, "token", hooks=hooks)


_EVENT_NAMES = (
    "RequestSent",
    "ResponseReceived",
    "RequestFailed",
    "RetryScheduled",
    "LimitChanged",
    "ClientEvents",
    "RequestEvents",
    "StreamEvents",
)


def count_events_built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each event the client builds, by wrapping the classes where it reaches them."""
    built: list[str] = []
    for module in (flex_participants._client, flex_participants._events):
        for name in (*_EVENT_NAMES, "PageDelivered", "StreamOpened", "StreamClosed"):
            cls = getattr(module, name, None)
            if cls is None:
                continue

            def counting(*args: Any, _cls: Any = cls, _name: str = name, **kwargs: Any) -> Any:
                built.append(_name)
                return _cls(*args, **kwargs)

            monkeypatch.setattr(module, name, counting)
    return built


async def busy_run(emulator: FlexEmulator, client: FlexClient) -> None:
    """Pages, a 503, a 429 and a transport error: every kind of event a client can tell."""
    kd, uo = emulator.add_channel(participants=120)
    emulator.add_fault(Fault("status", status=503, times=1))
    emulator.add_fault(Fault("status", status=429, times=1))
    emulator.add_fault(Fault("reset", times=1))
    async with client:
        assert len(await client.participants(kd, uo, page_size=50).collect()) == 120


async def test_a_client_without_hooks_builds_no_event(
    emulator: FlexEmulator,
    client_of: Callable[..., FlexClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = count_events_built(monkeypatch)
    await busy_run(emulator, client_of())
    assert built == []


async def test_the_count_of_events_built_sees_those_of_a_client_with_hooks(
    emulator: FlexEmulator,
    client_of: Callable[..., FlexClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The other side of the test above: the wrapping does see what a client builds.
    built = count_events_built(monkeypatch)
    await busy_run(emulator, client_of(hooks=[Recorder()]))
    assert set(built) == {*_EVENT_NAMES, "PageDelivered", "StreamOpened", "StreamClosed"}


# -- stats() -------------------------------------------------------------------------------


async def test_stats_counts_requests_retries_and_429s(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    kd, uo = emulator.add_channel(participants=3)
    emulator.add_fault(Fault("status", status=503, times=1))
    emulator.add_fault(Fault("status", status=429, times=1))
    async with client_of(max_concurrency=8) as client:
        assert client.stats() == ClientStats(0, 0, 0, 0, level=8, rate=None)
        await client.fetch_page(kd, uo)
        assert client.stats() == ClientStats(
            requests=3, retries=2, throttled=1, in_flight=0, level=4, rate=None
        )


async def test_stats_counts_the_requests_in_flight(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    kd, uo = emulator.add_channel(participants=3)
    seen: list[ClientStats] = []

    def look(event: Event) -> None:
        if isinstance(event, RequestSent):
            seen.append(client.stats())

    async with client_of(hooks=[look]) as client:
        await client.fetch_page(kd, uo)
    assert [(stats.requests, stats.in_flight) for stats in seen] == [(1, 1)]
    assert client.stats().in_flight == 0


async def test_stats_tells_the_rate_of_a_client_with_one(
    client_of: Callable[..., FlexClient],
) -> None:
    async with client_of(rate_limit=7.5) as client:
        assert client.stats().rate == 7.5


async def test_stats_has_no_level_nor_rate_for_a_limiter_without_them(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    class Plain:
        async def acquire(self) -> object:
            return None

        async def release(self, permit: object, *, throttled: bool) -> None:
            pass

    kd, uo = emulator.add_channel(participants=3)
    async with client_of(limiter=Plain()) as client:
        await client.fetch_page(kd, uo)
        assert client.stats() == ClientStats(1, 0, 0, 0, level=None, rate=None)


# -- trace_configs= ------------------------------------------------------------------------


async def test_trace_configs_reach_the_session_the_client_makes(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    kd, uo = emulator.add_channel(participants=3)
    started: list[str] = []

    async def on_request_start(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        started.append(str(params.url))

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_request_start)
    async with client_of(trace_configs=[config]) as client:
        await client.fetch_page(kd, uo)
    assert started == [first_page_url(emulator, kd, uo)]


async def test_trace_configs_are_refused_with_a_session_of_ones_own() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(InvalidArgumentError, match="trace_configs"):
            FlexClient(
                "AC" + "0" * 32, "token", session=session, trace_configs=[aiohttp.TraceConfig()]
            )


@pytest.mark.parametrize("trace_configs", [aiohttp.TraceConfig, [object()]])
def test_trace_configs_must_be_trace_configs(trace_configs: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="TraceConfig"):
        FlexClient("AC" + "0" * 32, "token", trace_configs=trace_configs)


# -- logging -------------------------------------------------------------------------------


def test_an_application_that_configured_no_logging_is_shown_nothing() -> None:
    # Without the package's NullHandler, logging's last resort would print the error.
    program = (
        "import logging, flex_participants\n"
        "logging.getLogger('flex_participants').error('a hook raised')\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, our own program
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stderr == ""


async def test_a_retry_is_logged_at_info(
    emulator: FlexEmulator,
    client_of: Callable[..., FlexClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    kd, uo = emulator.add_channel(participants=3)
    emulator.add_fault(Fault("status", status=429, times=1))
    caplog.set_level(logging.INFO, logger="flex_participants")
    async with client_of() as client:
        await client.fetch_page(kd, uo)
    [retry] = [r for r in caplog.records if r.getMessage().startswith("retrying GET")]
    assert retry.levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_hook_raising_a_cancellation_costs_no_slot(emulator: FlexEmulator) -> None:
    kd, uo = emulator.add_channel(participants=3)
    raised = False

    def cancelling(event: Event) -> None:
        nonlocal raised
        if isinstance(event, ResponseReceived) and not raised:
            raised = True
            raise asyncio.CancelledError

    async with FlexClient(
        **emulator.client_kwargs(), max_concurrency=1, rate_limit=None, hooks=[cancelling]
    ) as client:
        with pytest.raises(asyncio.CancelledError):
            await client.fetch_page(kd, uo)
        # The one slot came back before the hook ran: the next call gets it at once.
        async with asyncio.timeout(5):
            page = await client.fetch_page(kd, uo)
        assert len(page.participants) == 3
        assert client.limiter.in_flight == 0  # type: ignore[attr-defined]


def test_limit_changed_comes_once_per_change_never_twice_alike() -> None:
    hook = Recorder()

    async def main() -> None:
        async with FlexEmulator(rate_limit=5, burst=2, latency=0.05) as emulator:
            pairs = [emulator.add_channel(participants=2) for _ in range(20)]
            async with FlexClient(**emulator.client_kwargs(), hooks=[hook]) as client:
                async with client.participants_for_channels(pairs) as batch:
                    assert len([result async for result in batch]) == 20

    in_virtual_time(main)
    changes = [(event.level, event.rate) for event in hook.of(LimitChanged)]
    assert changes  # the budget's 429s lowered the rate
    assert all(a != b for a, b in itertools.pairwise(changes))
    assert len(changes) < len(hook.of(RequestSent)) / 4


# -- what the events measure ------------------------------------------------------------


async def test_an_end_event_measures_its_own_request_within_the_call(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    # A reset, then a success: one RequestFailed and one ResponseReceived, each timing one
    # attempt, which lies within the whole call.
    started = time.perf_counter()
    hook, _, _ = await fetch_once(emulator, client_of, Fault("reset", times=1), participants=60)
    whole = time.perf_counter() - started

    [failed] = hook.of(RequestFailed)
    [received] = hook.of(ResponseReceived)
    assert 0 <= failed.elapsed <= whole
    assert 0 <= received.elapsed <= whole


class SetRateLimiter:
    """A limiter whose `rate` the test sets, and which never holds a request back."""

    def __init__(self, rate: float) -> None:
        self.level = 1
        self.rate = rate

    async def acquire(self) -> object:
        return None

    async def release(self, permit: object, *, throttled: bool) -> None:
        pass


async def test_a_rate_given_as_an_int_is_told_as_a_float(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    limiter = SetRateLimiter(5)
    hook = Recorder()
    async with client_of(limiter=limiter, hooks=[hook]) as client:
        stats = client.stats()
        limiter.rate = 7
        await client.fetch_page(*emulator.add_channel(participants=1))

    assert type(stats.rate) is float
    assert stats.rate == 5.0
    [changed] = hook.of(LimitChanged)
    assert type(changed.rate) is float
    assert changed.rate == 7.0


async def test_a_rate_is_told_when_it_moves_by_one_percent_and_not_below(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    limiter = SetRateLimiter(100.0)
    hook = Recorder()
    channel = emulator.add_channel(participants=1)
    async with client_of(limiter=limiter, hooks=[hook]) as client:
        for rate in (100.5, 100.9, 101.2, 101.9, 102.5):
            limiter.rate = rate
            await client.fetch_page(*channel)

    # Each move is measured from the rate last told: 100 -> 101.2, then 101.2 -> 102.5.
    assert [event.rate for event in hook.of(LimitChanged)] == [101.2, 102.5]


# -- every RequestSent ends once, and every slot comes back ---------------------------------


class FailingRelease(AdaptiveLimiter):
    """A limiter that gives each slot back, then raises."""

    def __init__(self) -> None:
        super().__init__(2)

    async def release(
        self, permit: object, *, throttled: bool, throttle: Throttle | None = None
    ) -> None:
        await super().release(permit, throttled=throttled, throttle=throttle)
        raise RuntimeError("the limiter broke on the way out")


async def test_a_release_that_raises_after_a_whole_response_still_ends_its_request(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    kd, uo = emulator.add_channel(participants=3)
    hook = Recorder()
    async with client_of(hooks=[hook], limiter=FailingRelease()) as client:
        with pytest.raises(FlexError, match="failed to take a slot back") as raised:
            await client.fetch_page(kd, uo)
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert hook.kinds() == ["RequestSent", "ResponseReceived"]
    sent, received = hook.events
    assert isinstance(sent, RequestSent)
    assert isinstance(received, ResponseReceived)
    assert (received.id, received.status) == (sent.id, 200)


class SlowRelease(AdaptiveLimiter):
    """A limiter of one slot whose release first awaits ``delay()``, as one that tells another
    process would; `releasing` is set when a release starts."""

    def __init__(self, delay: Callable[[], Awaitable[object]]) -> None:
        super().__init__(1)
        self.releasing = asyncio.Event()
        self._delay = delay

    async def release(
        self, permit: object, *, throttled: bool, throttle: Throttle | None = None
    ) -> None:
        self.releasing.set()
        await self._delay()
        await super().release(permit, throttled=throttled, throttle=throttle)


async def test_close_landing_while_a_slot_is_given_back_still_gives_it_back_and_ends_once(
    emulator: FlexEmulator, client_of: Callable[..., FlexClient]
) -> None:
    kd, uo = emulator.add_channel(participants=3)
    hook = Recorder()
    gate = asyncio.Event()
    limiter = SlowRelease(gate.wait)
    client = client_of(hooks=[hook], limiter=limiter)
    fetching = asyncio.create_task(client.fetch_page(kd, uo))
    await limiter.releasing.wait()
    closing = asyncio.create_task(client.close())
    await asyncio.sleep(0)  # close() has cancelled the release's wait
    gate.set()
    with pytest.raises(ClientClosedError):
        await fetching
    await closing

    assert limiter.in_flight == 0  # the slot came back
    assert hook.kinds() == ["RequestSent", "ResponseReceived"]


def test_a_deadline_running_out_while_a_slot_is_given_back_still_gives_it_back() -> None:
    hook = Recorder()
    limiter = SlowRelease(lambda: asyncio.sleep(1.0))

    async def main() -> None:
        async with FlexEmulator(seed=15) as emulator:
            kd, uo = emulator.add_channel(participants=3)
            async with FlexClient(
                **emulator.client_kwargs(), hooks=[hook], limiter=limiter
            ) as client:
                # The deadline runs out during the release, which it outlives.
                with pytest.raises(DeadlineExceededError):
                    await client.fetch_page(kd, uo, deadline=0.5)

    in_virtual_time(main)
    assert limiter.in_flight == 0
    assert hook.kinds() == ["RequestSent", "ResponseReceived"]
