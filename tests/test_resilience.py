"""Retries, throttling, timeouts, cancellation and the origin rule, over real loopback HTTP.

Each fault is planned for an exact channel and page; each test asserts the exact participants
delivered, or the exact error and attempt count.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web

from flex_participants import (
    FlexClient,
    FlexError,
    InvalidResponseError,
    RateLimitError,
    ResponseTooLargeError,
    RetryPolicy,
    ServerError,
    TransportError,
    UnsafeURLError,
)

from .helpers import KD, assert_no_secret, hold_requests, secrets_of, sid, twilio_error
from .server import (
    Hook,
    PagedServer,
    Seen,
    idle_tasks,
    rewrite_next_page_url,
    serve,
    settle,
    sids_until,
)

ClientFor = Callable[..., FlexClient]
Fault = Callable[[Seen], Awaitable[web.StreamResponse]]


async def rate_limited(seen: Seen) -> web.StreamResponse:
    return web.json_response(twilio_error(429, 20429, "Too many requests"), status=429)


async def server_error(seen: Seen) -> web.StreamResponse:
    return web.json_response(twilio_error(500, 20500, "Internal error"), status=500)


async def unavailable(seen: Seen) -> web.StreamResponse:
    return web.json_response(twilio_error(503, 20503, "Unavailable"), status=503)


async def html_bad_gateway(seen: Seen) -> web.StreamResponse:
    return web.Response(
        status=502, text="<html><h1>502 Bad Gateway</h1></html>", content_type="text/html"
    )


async def truncated_json(seen: Seen) -> web.StreamResponse:
    return web.Response(body=b'{"participants": [{"sid": "UT', content_type="application/json")


async def reset_mid_body(seen: Seen) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "application/json", "Content-Length": "5000"}
    )
    await response.prepare(seen.request)
    await response.write(b'{"participants": [')
    assert seen.request.transport is not None
    seen.request.transport.close()
    return response


def fail_once_on(server: PagedServer, page: int, fault: Fault) -> None:
    """Answer ``fault`` to the first request for ``page`` of every channel, then normally."""
    failed: set[str] = set()

    async def hook(seen: Seen) -> web.StreamResponse | None:
        if seen.page == page and seen.channel_sid not in failed:
            failed.add(seen.channel_sid)
            return await fault(seen)
        return None

    server.hook = hook


FAULTS = {
    "429": rate_limited,
    "500": server_error,
    "503": unavailable,
    "html 502": html_bad_gateway,
    "truncated json": truncated_json,
    "reset mid-body": reset_mid_body,
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
@pytest.mark.parametrize("page", [0, 1, 3], ids=["first page", "prefetched page", "last page"])
async def test_a_failed_page_is_retried_and_the_stream_resumes_exactly_there(
    paged_server: PagedServer, client_for: ClientFor, fault: Fault, page: int
) -> None:
    uo = paged_server.add_channel(1, 40)
    fail_once_on(paged_server, page, fault)
    async with client_for(paged_server) as client:
        got = [p.sid async for p in client.participants(KD, uo, page_size=10)]
        assert client.retries == 1
    assert got == [sid("UT", n) for n in range(40)]
    assert [s.page for s in paged_server.seen].count(page) == 2


async def test_streams_sharing_a_client_each_resume_exactly_where_they_failed(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    channels = [paged_server.add_channel(n, 55) for n in range(6)]
    plan = {2: unavailable, 3: reset_mid_body, 4: rate_limited}
    done: set[tuple[str, int]] = set()

    async def hook(seen: Seen) -> web.StreamResponse | None:
        fault = plan.get(seen.page)
        if fault is not None and (seen.channel_sid, seen.page) not in done:
            done.add((seen.channel_sid, seen.page))
            return await fault(seen)
        return None

    paged_server.hook = hook
    async with client_for(paged_server, max_concurrency=4) as client:
        results = await asyncio.gather(
            *(client.participants(KD, uo, page_size=10, prefetch=2).collect() for uo in channels)
        )
    for result in results:
        assert [p.sid for p in result] == [sid("UT", n) for n in range(55)]


@pytest.mark.parametrize(
    ("fault", "error_class", "status"),
    [
        (rate_limited, RateLimitError, 429),
        (unavailable, ServerError, 503),
        (html_bad_gateway, ServerError, 502),
        (truncated_json, InvalidResponseError, 200),
    ],
    ids=["429", "503", "html 502", "truncated json"],
)
async def test_after_the_last_attempt_the_caller_gets_the_typed_error_with_the_attempt_count(
    paged_server: PagedServer,
    client_for: ClientFor,
    fault: Fault,
    error_class: type[Exception],
    status: int,
) -> None:
    uo = paged_server.add_channel(1, 10)
    paged_server.hook = fault
    retry = RetryPolicy(max_attempts=3, backoff_base=0.0, patience=0)
    async with client_for(paged_server, retry=retry) as client:
        with pytest.raises(error_class) as caught:
            await client.participants(KD, uo).collect()
    error = caught.value
    assert getattr(error, "attempts", None) == 3
    assert getattr(error, "status", None) == status
    assert len(paged_server.seen) == 3


async def test_a_connection_reset_after_the_last_attempt_is_a_transport_error(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 10)
    paged_server.hook = reset_mid_body
    async with client_for(
        paged_server, retry=RetryPolicy(max_attempts=2, backoff_base=0)
    ) as client:
        with pytest.raises(TransportError) as caught:
            await client.fetch_page(KD, uo)
    assert caught.value.attempts == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_never_retried(
    paged_server: PagedServer, client_for: ClientFor, status: int
) -> None:
    uo = paged_server.add_channel(1, 10)

    async def hook(seen: Seen) -> web.StreamResponse:
        return web.json_response(twilio_error(status, 20000 + status, "no"), status=status)

    paged_server.hook = hook
    async with client_for(paged_server) as client:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the class is checked below
            await client.fetch_page(KD, uo)
    assert getattr(caught.value, "status", None) == status
    assert len(paged_server.seen) == 1


# -- Retry-After -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("header", ["seconds", "http date"])
async def test_retry_after_is_honoured_even_above_backoff_max(
    paged_server: PagedServer, client_for: ClientFor, header: str, status: int
) -> None:
    uo = paged_server.add_channel(1, 5)
    value = "1"
    if header == "http date":
        value = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    answered = False

    async def hook(seen: Seen) -> web.StreamResponse | None:
        nonlocal answered
        if answered:
            return None
        answered = True
        return web.json_response(
            twilio_error(status, 20000 + status, "Slow down"),
            status=status,
            headers={"Retry-After": value},
        )

    paged_server.hook = hook
    retry = RetryPolicy(backoff_base=0.0, backoff_max=0.0)
    async with client_for(paged_server, retry=retry) as client:
        assert len(await client.participants(KD, uo).collect()) == 5
    first, second = paged_server.seen
    # An HTTP date has whole-second precision: it asks for at least one second here too.
    assert second.at - first.at >= 0.95


# -- adaptive throttling -------------------------------------------------------------------------


async def test_a_batch_against_a_server_allowing_n_in_flight_converges_without_storming_it(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    allowed = 4
    channels = [paged_server.add_channel(n, 30) for n in range(200)]
    throttled = 0

    async def hook(seen: Seen) -> web.StreamResponse | None:
        nonlocal throttled
        if paged_server.in_flight > allowed:
            throttled += 1
            return await rate_limited(seen)
        await asyncio.sleep(0.002)
        return None

    paged_server.hook = hook
    retry = RetryPolicy(max_attempts=10, backoff_base=0.01, backoff_max=0.05)
    async with client_for(paged_server, max_concurrency=16, retry=retry) as client:
        async with client.participants_for_channels(
            [(KD, uo) for uo in channels], page_size=10
        ) as batch:
            results = [r async for r in batch]
    assert all(r.ok and len(r.participants) == 30 for r in results)
    assert len(results) == 200
    total = len(paged_server.seen)
    assert throttled < 0.10 * total, (throttled, total)


async def test_the_limit_recovers_after_429s_but_never_exceeds_max_concurrency(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    # Enough requests after the storm that the level's climb back to 8 (about 64 successes
    # with the window full) never depends on how the last channels happen to finish.
    channels = [paged_server.add_channel(n, 20) for n in range(200)]
    storm = 10

    async def hook(seen: Seen) -> web.StreamResponse | None:
        nonlocal storm
        if storm > 0:
            storm -= 1
            return await rate_limited(seen)
        await asyncio.sleep(0.002)
        return None

    paged_server.hook = hook
    async with client_for(paged_server, max_concurrency=8) as client:
        async with client.participants_for_channels(
            [(KD, uo) for uo in channels], page_size=5
        ) as b:
            results = [r async for r in b]
        limiter = client.limiter
        assert limiter.level == 8  # type: ignore[attr-defined]
    assert all(r.ok for r in results)
    assert paged_server.peak_in_flight <= 8


async def test_rate_limit_caps_requests_per_second(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 10)
    async with client_for(paged_server, rate_limit=50, burst=1) as client:
        await client.participants(KD, uo, page_size=1).collect()
    times = [s.at for s in paged_server.seen]
    assert len(times) == 10
    assert times[-1] - times[0] >= 9 / 50 * 0.95


# -- timeouts and cancellation ------------------------------------------------------------------


async def test_a_stalled_server_yields_a_transport_error_after_the_attempts(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 10)
    release = hold_requests(paged_server)
    retry = RetryPolicy(max_attempts=2, backoff_base=0.0)
    loop = asyncio.get_running_loop()
    async with client_for(paged_server, timeout=0.2, retry=retry) as client:
        started = loop.time()
        with pytest.raises(TransportError, match="timed out") as caught:
            await client.fetch_page(KD, uo)
        elapsed = loop.time() - started
    release.set()
    assert caught.value.attempts == 2
    assert 0.35 <= elapsed < 3.0


async def cancel_leaving_nothing_running(task: asyncio.Task[object], client: FlexClient) -> None:
    """Cancel ``task``, a consumer of ``client``; it ends promptly, and leaves no task running
    and no slot of the limiter held."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    await settle()
    assert idle_tasks() == set()
    assert client.limiter.in_flight == 0  # type: ignore[attr-defined]


async def test_cancelling_during_a_request_leaves_nothing_running(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 10)
    release = hold_requests(paged_server)
    async with client_for(paged_server) as client:
        task = asyncio.create_task(client.participants(KD, uo).collect())
        await paged_server.wait_for_requests(1)
        await cancel_leaving_nothing_running(task, client)
    release.set()


async def test_cancelling_during_a_backoff_sleep_is_prompt(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 10)
    paged_server.hook = unavailable
    retry = RetryPolicy(backoff_base=30.0, backoff_max=30.0, random=lambda: 1.0)
    async with client_for(paged_server, retry=retry) as client:
        task = asyncio.create_task(client.participants(KD, uo).collect())
        await paged_server.wait_for_requests(1)
        await settle()
        await cancel_leaving_nothing_running(task, client)


async def test_a_waiting_retry_holds_no_slot(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    slow_channel = paged_server.add_channel(1, 5)
    other = paged_server.add_channel(2, 5)

    async def hook(seen: Seen) -> web.StreamResponse | None:
        if seen.channel_sid == slow_channel:
            return await unavailable(seen)
        return None

    paged_server.hook = hook
    retry = RetryPolicy(backoff_base=30.0, backoff_max=30.0, random=lambda: 1.0)
    async with client_for(paged_server, max_concurrency=1, retry=retry) as client:
        sleeper = asyncio.create_task(client.fetch_page(KD, slow_channel))
        await paged_server.wait_for_requests(1)
        # With the only slot held by a sleeping retry this would hang; it must not.
        page = await asyncio.wait_for(client.fetch_page(KD, other), timeout=5)
        sleeper.cancel()
        await asyncio.wait([sleeper])
    assert len(page.participants) == 5


# -- credentials go nowhere else --------------------------------------------------------------------


async def test_a_foreign_next_page_url_is_refused_and_receives_nothing(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    async with serve(PagedServer()) as elsewhere:
        foreign = f"{elsewhere.base_url}/v1/Interactions/{KD}/Channels/{sid('UO', 1)}/Participants"
        uo = paged_server.add_channel(1, 20)

        rewrite_next_page_url(paged_server, uo, lambda seen: foreign + "?Page=1")
        async with client_for(paged_server) as client:
            stream = client.participants(KD, uo, page_size=10)
            got = await sids_until(UnsafeURLError, stream, match="refusing to send credentials")
        assert elsewhere.seen == []
    assert got == [sid("UT", n) for n in range(10)]


async def test_a_redirect_elsewhere_is_not_followed(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    async with serve(PagedServer()) as elsewhere:
        uo = paged_server.add_channel(1, 20)
        elsewhere.add_channel(1, 20)

        async def hook(seen: Seen) -> web.StreamResponse:
            raise web.HTTPFound(f"{elsewhere.base_url}{seen.request.path}")

        paged_server.hook = hook
        async with client_for(paged_server) as client:
            with pytest.raises(InvalidResponseError, match="redirect"):
                await client.fetch_page(KD, uo)
        assert elsewhere.seen == []


@pytest.mark.parametrize("call", ["fetch_page", "stream", "batch"])
@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
async def test_the_error_of_every_fault_holds_no_credentials(
    paged_server: PagedServer, client_for: ClientFor, fault: Fault, call: str
) -> None:
    uo = paged_server.add_channel(1, 10)
    paged_server.hook = fault
    retry = RetryPolicy(max_attempts=2, backoff_base=0.0, patience=0)
    error: FlexError | None = None
    async with client_for(paged_server, retry=retry) as client:
        try:
            if call == "fetch_page":
                await client.fetch_page(KD, uo)
            elif call == "stream":
                await client.participants(KD, uo, page_size=5).collect()
            else:
                async with client.participants_for_channels([(KD, uo)]) as batch:
                    (result,) = [r async for r in batch]
                error = result.error
        except FlexError as raised:
            error = raised
    assert error is not None
    assert error.attempts == 2
    secrets = secrets_of()
    assert paged_server.seen[0].authorization == secrets[1]  # sent, and then forgotten
    assert_no_secret(error, *secrets)


# -- bounded bodies over loopback ------------------------------------------------------------

MIB = 1 << 20


def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip body of ``inflated_mib`` MiB of spaces that is about 1 KiB per MiB on the wire:
    one small member, repeated (a gzip stream may hold many members, RFC 1952)."""
    return gzip.compress(b" " * MIB, compresslevel=9) * inflated_mib


def streaming_hook(chunks: Callable[[], Iterator[bytes]], **headers: str) -> Hook:
    """A hook that answers 200 with ``chunks`` streamed out, and stops when the client goes."""

    async def hook(seen: Seen) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json", **headers})
        await response.prepare(seen.request)
        with contextlib.suppress(ConnectionError):
            for chunk in chunks():
                await response.write(chunk)
            await response.write_eof()
        return response

    return hook


async def peak_memory_of(work: Awaitable[object]) -> tuple[int, BaseException | None]:
    """The peak of memory traced while ``work`` runs (tracemalloc), and what it raised."""
    tracemalloc.start()
    try:
        try:
            await work
        except Exception as exc:
            return tracemalloc.get_traced_memory()[1], exc
        return tracemalloc.get_traced_memory()[1], None
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("content_length", [False, True])
async def test_a_huge_body_fails_its_request_while_memory_stays_flat(
    paged_server: PagedServer, client_for: ClientFor, content_length: bool
) -> None:
    uo = paged_server.add_channel(1, 5)
    headers = {"Content-Length": str(200 * MIB)} if content_length else {}
    paged_server.hook = streaming_hook(lambda: (b" " * MIB for _ in range(200)), **headers)
    async with client_for(paged_server, max_body_size=2 * MIB) as client:
        peak, error = await peak_memory_of(client.participants(KD, uo).collect())
    assert isinstance(error, ResponseTooLargeError)
    assert error.attempts == 1  # not retried: it would be as large again
    assert peak < 16 * MIB


async def test_a_decompression_bomb_fails_its_request_while_memory_stays_flat(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 5)
    bomb = gzip_bomb(200)
    assert len(bomb) < 400 * 1024
    paged_server.hook = streaming_hook(
        lambda: (bomb[i : i + 16384] for i in range(0, len(bomb), 16384)),
        **{"Content-Encoding": "gzip", "Content-Length": str(len(bomb))},
    )
    async with client_for(paged_server) as client:  # the default cap, 8 MiB
        peak, error = await peak_memory_of(client.participants(KD, uo).collect())
    assert isinstance(error, ResponseTooLargeError)
    assert "passed 8388608 bytes" in str(error)
    assert peak < 40 * MIB


async def test_a_declared_length_over_the_cap_fails_before_any_body_arrives(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    uo = paged_server.add_channel(1, 5)
    stall = asyncio.Event()

    async def hook(seen: Seen) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Content-Length": str(200 * MIB)}
        )
        await response.prepare(seen.request)
        with contextlib.suppress(ConnectionError):
            await stall.wait()  # not one byte of the body: only the header can tell
        return response

    paged_server.hook = hook
    retry = RetryPolicy(max_attempts=1)
    async with client_for(paged_server, max_body_size=MIB, timeout=30, retry=retry) as client:
        async with asyncio.timeout(10):
            with pytest.raises(ResponseTooLargeError, match="Content-Length"):
                await client.participants(KD, uo).collect()
    stall.set()
