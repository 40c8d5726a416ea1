"""The emulator enforces Twilio's two limits: a token bucket of requests a second
(``rate_limit``, ``burst``) and requests at once (``max_in_flight``), answered 429 with
Twilio's body; and it tells every request how many were in flight when it arrived.

The bucket is tested on an injected clock; the emulator over real loopback HTTP, where the
limits are made deterministic by a refill too slow to matter (``rate_limit=0.001``), by an
event loop whose clock the test moves, or by requests held in flight by a client that does
not read their body.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import pytest

from flex_participants import InvalidArgumentError
from flex_participants.emulator import Fault, FlexEmulator
from flex_participants.emulator._budget import TokenBucket, default_burst, parse_rate_schedule

from ..cli.helpers import SCRIPT, cli_command, environment, finish
from .helpers import MIB, Answer, fetch, new_channel_url, opened

HEADER = "Twilio-Concurrent-Requests"
T = TypeVar("T")


def assert_throttled(answer: Answer, code: int, message: str) -> None:
    """A 429 with Twilio's body, as Twilio answers one."""
    assert answer.status == 429
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": 429,
    }


@contextlib.asynccontextmanager
async def held(
    session: aiohttp.ClientSession, emulator: FlexEmulator, url: str, count: int = 1
) -> AsyncIterator[list[aiohttp.ClientResponse]]:
    """``count`` requests to ``url`` kept in flight at the server: their answer is a 256 MiB
    ``"oversized"`` page (a fault this adds), of which only the headers are read, so that the
    server's handler waits on the socket.

    Their headers have arrived when this yields: the requests are past the limits' checks.
    The server has finished with them when the block ends.
    """
    emulator.add_fault(Fault("oversized", size=256 * MIB, times=count))
    async with contextlib.AsyncExitStack() as stack:
        responses = [await stack.enter_async_context(opened(session, url)) for _ in range(count)]
        yield responses
        for response in responses:
            response.close()
    await settled(emulator)


async def settled(emulator: FlexEmulator) -> None:
    """Wait until the server has finished every request (the held ones, once closed)."""
    async with asyncio.timeout(30):
        # Polled: the emulator's counters signal nothing a test could wait on.
        while emulator.stats.in_flight:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


class Clock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the bucket, on an injected clock -----------------------------------------------------


def empty_bucket(rate: float, burst: int, clock: Clock) -> TokenBucket:
    bucket = TokenBucket(rate, burst, clock)
    while bucket.take():
        pass
    return bucket


def test_a_bucket_starts_full_and_gives_burst_tokens_at_once() -> None:
    bucket = TokenBucket(4.0, 3, Clock())

    assert bucket.tokens == 3
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_a_bucket_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = empty_bucket(4.0, 3, clock)

    clock.now += 0.5

    assert bucket.tokens == 2
    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    clock = Clock()
    bucket = empty_bucket(4.0, 3, clock)

    clock.now += 3600

    assert bucket.tokens == 3


def test_a_fraction_of_a_token_is_refused() -> None:
    clock = Clock()
    bucket = empty_bucket(4.0, 3, clock)

    clock.now += 0.125

    assert bucket.tokens == 0.5
    assert not bucket.take()


def test_a_refusal_takes_nothing() -> None:
    clock = Clock()
    bucket = empty_bucket(4.0, 3, clock)
    clock.now += 0.125
    assert not bucket.take()

    clock.now += 0.125

    assert bucket.tokens == 1
    assert bucket.take()


def test_a_token_due_to_the_instant_is_not_lost_to_float_rounding() -> None:
    clock = Clock()
    bucket = empty_bucket(20.0, 1, clock)

    clock.now += 0.05  # 1000.05 - 1000.0 is 0.0499999999999545 as floats

    assert bucket.take()


def test_a_new_rate_keeps_the_tokens_and_counts_from_the_change() -> None:
    clock = Clock()
    bucket = empty_bucket(4.0, 3, clock)
    clock.now += 0.125  # half a token at 4/s

    bucket.retune(8.0, 3)
    assert bucket.tokens == 0.5
    clock.now += 0.0625  # half a token at 8/s

    assert bucket.tokens == 1


def test_a_smaller_burst_drops_the_tokens_above_it_and_a_larger_one_adds_none() -> None:
    clock = Clock()
    bucket = TokenBucket(4.0, 5, clock)

    bucket.retune(4.0, 2)
    assert bucket.tokens == 2
    bucket.retune(4.0, 4)

    assert bucket.tokens == 2
    clock.now += 3600
    assert bucket.tokens == 4


@pytest.mark.parametrize(
    ("rate", "burst"), [(20.0, 5), (10.0, 2), (100.0, 25), (2.0, 1), (0.001, 1)]
)
def test_the_default_burst_is_a_quarter_second_of_requests_and_at_least_one(
    rate: float, burst: int
) -> None:
    assert default_burst(rate) == burst


# -- the settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        {"rate_limit": 0},
        {"rate_limit": -1.0},
        {"rate_limit": float("nan")},
        {"rate_limit": float("inf")},
        {"rate_limit": True},
        {"rate_limit": "20"},
        {"rate_limit": 20, "burst": 0},
        {"rate_limit": 20, "burst": 2.5},
        {"rate_limit": 20, "burst": True},
        {"burst": 5},
        {"concurrency_code": 20430},
        {"concurrency_code": "45780"},
        {"concurrency_code": 45780.0},
    ],
)
def test_limits_out_of_range_are_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        FlexEmulator(**arguments)


def test_burst_without_rate_limit_says_why() -> None:
    with pytest.raises(InvalidArgumentError, match="rate_limit"):
        FlexEmulator(burst=5)


def test_the_burst_defaults_to_a_quarter_second_of_the_rate_and_follows_it() -> None:
    emulator = FlexEmulator(rate_limit=20)
    assert (emulator.rate_limit, emulator.burst) == (20.0, 5)

    emulator.rate_limit = 40

    assert emulator.burst == 10


def test_a_burst_given_stays_when_the_rate_changes_until_set_to_none() -> None:
    emulator = FlexEmulator(rate_limit=20, burst=2)

    emulator.rate_limit = 40
    assert emulator.burst == 2
    emulator.burst = None

    assert emulator.burst == 10


def test_without_a_rate_limit_there_is_no_burst() -> None:
    emulator = FlexEmulator(rate_limit=20, burst=2)
    assert FlexEmulator().burst is None

    emulator.rate_limit = None

    assert emulator.burst is None
    with pytest.raises(InvalidArgumentError, match="rate_limit"):
        emulator.burst = 2


@pytest.mark.parametrize(
    ("name", "value"),
    [("rate_limit", 0), ("burst", 0), ("concurrency_code", 429), ("max_in_flight", 0)],
)
def test_limits_set_out_of_range_are_refused(name: str, value: object) -> None:
    emulator = FlexEmulator(rate_limit=20)

    with pytest.raises(InvalidArgumentError):
        setattr(emulator, name, value)


# -- the rate budget, over HTTP -----------------------------------------------------------


async def test_the_first_burst_requests_pass_and_the_next_is_429_code_20429(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator(rate_limit=0.001, burst=3) as emulator:
        url = new_channel_url(emulator)

        answers = [await fetch(session, url) for _ in range(4)]

    assert [answer.status for answer in answers] == [200, 200, 200, 429]
    assert_throttled(answers[3], 20429, "Too many requests")
    assert "Retry-After" not in answers[3].headers


async def rate_refused(
    session: aiohttp.ClientSession, **settings: Any
) -> tuple[FlexEmulator, Answer]:
    """The answer to a second request to an emulator of one token and ``settings``, and the
    emulator (stopped)."""
    async with FlexEmulator(rate_limit=0.001, burst=1, **settings) as emulator:
        url = new_channel_url(emulator)
        await fetch(session, url)  # the one token
        answer = await fetch(session, url)
    return emulator, answer


async def test_a_rate_429_carries_retry_after_if_set(session: aiohttp.ClientSession) -> None:
    _, answer = await rate_refused(session, retry_after=1.5)

    assert answer.status == 429
    assert answer.headers["Retry-After"] == "1.5"


async def test_the_limits_are_checked_before_the_credentials(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator(rate_limit=0.001, burst=1) as emulator:
        url = new_channel_url(emulator)

        unauthenticated = await fetch(session, url, authorization=None)
        throttled = await fetch(session, url, authorization=None)

    assert unauthenticated.status == 401  # it took the one token
    assert_throttled(throttled, 20429, "Too many requests")
    assert [record.authorized for record in emulator.stats.log] == [False, False]


async def test_a_rate_429_is_answered_after_the_latency(session: aiohttp.ClientSession) -> None:
    emulator, answer = await rate_refused(session, latency=0.2)

    assert answer.status == 429
    record = emulator.stats.log[-1]
    assert record.throttle == "rate"
    assert record.duration >= 0.2 - 1e-6  # by the server's own loop clock


async def test_changing_the_rate_while_it_runs_adds_no_tokens(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator(rate_limit=0.001, burst=2) as emulator:
        url = new_channel_url(emulator)
        assert [(await fetch(session, url)).status for _ in range(2)] == [200, 200]

        emulator.rate_limit = 0.002
        emulator.burst = 5

        assert (await fetch(session, url)).status == 429


async def test_a_rate_limit_set_while_it_runs_starts_full(session: aiohttp.ClientSession) -> None:
    async with FlexEmulator() as emulator:
        url = new_channel_url(emulator)

        emulator.rate_limit = 0.004  # its burst: 1

        assert [(await fetch(session, url)).status for _ in range(2)] == [200, 429]


async def test_a_rate_limit_set_to_none_lets_every_request_pass(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator(rate_limit=0.001, burst=1) as emulator:
        url = new_channel_url(emulator)
        await fetch(session, url)

        emulator.rate_limit = None

        assert [(await fetch(session, url)).status for _ in range(3)] == [200, 200, 200]


class _MovableClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock the test moves forward, on top of the real one."""

    def __init__(self) -> None:
        super().__init__()
        self.skew = 0.0

    def time(self) -> float:
        return super().time() + self.skew


def on_a_movable_clock(main: Callable[[_MovableClockLoop], Awaitable[T]]) -> T:
    """Run ``main(loop)`` on a `_MovableClockLoop`; what it returns."""

    async def run() -> T:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, _MovableClockLoop)
        return await main(loop)

    with asyncio.Runner(loop_factory=_MovableClockLoop) as runner:
        return runner.run(run())


async def statuses_as_the_clock_moves(
    loop: _MovableClockLoop, emulator: FlexEmulator, moves: list[float], *, first: float = 0.0
) -> list[int]:
    """A request, ``first`` seconds after the start, then one after each move of the clock:
    their statuses."""
    # A fresh connection each time: moving the clock may time out an idle one at either end.
    connector = aiohttp.TCPConnector(force_close=True)
    async with emulator, aiohttp.ClientSession(connector=connector) as client_session:
        url = new_channel_url(emulator)
        loop.skew += first
        statuses = [(await fetch(client_session, url)).status]
        for seconds in moves:
            loop.skew += seconds
            statuses.append((await fetch(client_session, url)).status)
    return statuses


def test_the_bucket_refills_by_the_event_loops_clock() -> None:
    # At 0.01/s, the real time the requests take adds nothing that matters.
    def main(loop: _MovableClockLoop) -> Awaitable[list[int]]:
        emulator = FlexEmulator(rate_limit=0.01, burst=1)
        return statuses_as_the_clock_moves(loop, emulator, [0.0, 100.0, 0.0])

    assert on_a_movable_clock(main) == [200, 429, 200, 429]


def test_a_rate_429_takes_no_token() -> None:
    # Half a token, refused; half a token more makes one, only if the refusal took none.
    def main(loop: _MovableClockLoop) -> Awaitable[list[int]]:
        emulator = FlexEmulator(rate_limit=0.01, burst=1)
        return statuses_as_the_clock_moves(loop, emulator, [50.0, 50.0])

    assert on_a_movable_clock(main) == [200, 429, 200]


# -- a budget that follows a schedule -----------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        [(-1.0, 10.0)],
        [(float("nan"), 10.0)],
        [(True, 10.0)],
        [(5.0, 0.0)],
        [(5.0, float("inf"))],
        [(5.0, 10.0), (5.0, 20.0)],
        [(5.0, 10.0), (3.0, 20.0)],
        [(5.0,)],
        [(5.0, 10.0, 1.0)],
        "5:10",
        5.0,
    ],
)
def test_a_schedule_out_of_range_is_refused(schedule: object) -> None:
    with pytest.raises(InvalidArgumentError, match="rate_schedule"):
        FlexEmulator(rate_limit=20, rate_schedule=schedule)  # type: ignore[arg-type]


def test_a_schedule_without_rate_limit_says_why() -> None:
    with pytest.raises(InvalidArgumentError, match="give rate_limit too"):
        FlexEmulator(rate_schedule=[(5.0, 10.0)])


def test_a_schedule_is_kept_as_given_and_an_empty_one_is_none() -> None:
    assert FlexEmulator(rate_limit=20, rate_schedule=[(5, 10), (13, 20)]).rate_schedule == (
        (5.0, 10.0),
        (13.0, 20.0),
    )
    assert FlexEmulator(rate_limit=20, rate_schedule=[]).rate_schedule == ()
    assert FlexEmulator(rate_schedule=None).rate_schedule == ()


def test_a_schedule_is_read_from_seconds_colon_rate_pairs() -> None:
    assert parse_rate_schedule("5:10,13.5:20") == [(5.0, 10.0), (13.5, 20.0)]


@pytest.mark.parametrize("text", ["", "5", "5:", "5:ten", "5:10;13:20"])
def test_a_schedule_that_is_no_pairs_of_numbers_does_not_parse(text: str) -> None:
    with pytest.raises(ValueError, match=r"SECONDS:RATE|could not convert"):
        parse_rate_schedule(text)


def test_the_schedule_is_timed_from_the_first_request_not_the_start() -> None:
    # Timed from the start, the rate would be 1/s after the first 100 s, and the request
    # 5 s after the first one would find a token.
    async def main(loop: _MovableClockLoop) -> list[int]:
        emulator = FlexEmulator(rate_limit=0.01, burst=1, rate_schedule=[(10.0, 1.0)])
        statuses = await statuses_as_the_clock_moves(loop, emulator, [0.0, 5.0], first=100.0)
        rates = [emulator.rate_limit]
        loop.skew += 5.0  # 10 s after the first request
        rates.append(emulator.rate_limit)
        assert rates == [0.01, 1.0]
        return statuses

    assert on_a_movable_clock(main) == [200, 429, 429]


def test_a_step_refills_at_the_old_rate_up_to_its_instant_and_at_the_new_one_after() -> None:
    # Three tokens taken at once; the step to 1/s is due 10 s later, when 10 s at 0.1/s have
    # made one token. 1.5 s later there are 2.5: two requests pass. Had the step been made
    # only at the next request, 11.5 s at 0.1/s would have made 1.15 tokens: one.
    def main(loop: _MovableClockLoop) -> Awaitable[list[int]]:
        emulator = FlexEmulator(rate_limit=0.1, burst=3, rate_schedule=[(10.0, 1.0)])
        return statuses_as_the_clock_moves(loop, emulator, [0.0, 0.0, 0.0, 11.5, 0.0, 0.0])

    assert on_a_movable_clock(main) == [200, 200, 200, 429, 200, 200, 429]


def test_a_step_keeps_the_tokens_held_and_a_burst_given() -> None:
    async def main(loop: _MovableClockLoop) -> list[int]:
        emulator = FlexEmulator(rate_limit=0.001, burst=2, rate_schedule=[(1.0, 0.002)])
        statuses = await statuses_as_the_clock_moves(loop, emulator, [1.0, 0.0])
        assert (emulator.rate_limit, emulator.burst) == (0.002, 2)
        return statuses

    # The first request takes one token of two; the second, after the step, the other.
    assert on_a_movable_clock(main) == [200, 200, 429]


def test_a_burst_not_given_follows_each_step_of_the_schedule() -> None:
    async def main(loop: _MovableClockLoop) -> list[int]:
        emulator = FlexEmulator(rate_limit=20, rate_schedule=[(1.0, 40.0)])
        bursts = [emulator.burst or 0]
        statuses = await statuses_as_the_clock_moves(loop, emulator, [1.0])
        return [*bursts, emulator.burst or 0, *statuses]

    assert on_a_movable_clock(main) == [5, 10, 200, 200]


def test_a_reset_takes_the_schedule_back_to_its_start() -> None:
    async def main(loop: _MovableClockLoop) -> list[float | None]:
        emulator = FlexEmulator(rate_limit=0.01, burst=1, rate_schedule=[(10.0, 1.0)])
        rates: list[float | None] = []
        connector = aiohttp.TCPConnector(force_close=True)
        async with emulator, aiohttp.ClientSession(connector=connector) as client_session:
            url = new_channel_url(emulator)
            await fetch(client_session, url)  # the schedule starts
            loop.skew += 20.0
            rates.append(emulator.rate_limit)
            emulator.reset_stats()
            rates.append(emulator.rate_limit)
            loop.skew += 20.0  # no request yet: the schedule waits for one
            rates.append(emulator.rate_limit)
            await fetch(client_session, url)  # it starts again
            loop.skew += 10.0
            rates.append(emulator.rate_limit)
        return rates

    assert on_a_movable_clock(main) == [1.0, 0.01, 0.01, 1.0]


async def test_the_served_reset_takes_the_schedule_back_to_its_start(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator(rate_limit=1000, burst=1, rate_schedule=[(0.0, 0.001)]) as emulator:
        await fetch(session, new_channel_url(emulator))
        stepped = emulator.rate_limit
        async with session.post(f"{emulator.base_url}/__emulator__/reset") as reset:
            assert reset.status == 204

        assert (stepped, emulator.rate_limit) == (0.001, 1000.0)


# -- the server's span --------------------------------------------------------------------


def test_the_span_runs_from_the_first_request_to_the_last_answer_without_the_log() -> None:
    async def main(loop: _MovableClockLoop) -> list[int]:
        emulator = FlexEmulator(log_limit=0)
        statuses = await statuses_as_the_clock_moves(loop, emulator, [7.0])
        stats = emulator.stats
        assert stats.log == []
        assert stats.first_started is not None
        assert stats.last_finished is not None
        assert stats.span == stats.last_finished - stats.first_started
        assert stats.span >= 7.0
        return statuses

    assert on_a_movable_clock(main) == [200, 200]


async def test_the_span_is_served_and_reset(session: aiohttp.ClientSession) -> None:
    async with FlexEmulator() as emulator:
        await fetch(session, new_channel_url(emulator))
        stats_url = f"{emulator.base_url}/__emulator__/stats?log=0"
        served = (await fetch(session, stats_url)).json()
        emulator.reset_stats()
        after = (await fetch(session, stats_url)).json()

    assert served["span"] == served["last_finished"] - served["first_started"]
    assert served["span"] >= 0
    assert (after["first_started"], after["last_finished"], after["span"]) == (None, None, None)
    assert emulator.stats.span is None


# -- requests at once, over HTTP ----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message"), [(20429, "Too many requests"), (45780, "Too many concurrent requests")]
)
async def test_a_request_above_max_in_flight_is_429_with_the_concurrency_code(
    session: aiohttp.ClientSession, code: int, message: str
) -> None:
    async with FlexEmulator(max_in_flight=1, concurrency_code=code) as emulator:
        url = new_channel_url(emulator)
        async with held(session, emulator, url) as [first]:
            refused = await fetch(session, url)

    assert first.status == 200
    assert_throttled(refused, code, message)
    assert [record.throttle for record in emulator.stats.log] == ["concurrency", None]


async def concurrency_refused(
    session: aiohttp.ClientSession, **changes: Any
) -> tuple[FlexEmulator, Answer]:
    """The answer to a request to an emulator of ``max_in_flight=1`` while another is held,
    ``changes`` set on it once the first is in flight; and the emulator (stopped)."""
    async with FlexEmulator(max_in_flight=1) as emulator:
        url = new_channel_url(emulator)
        async with held(session, emulator, url):
            for name, value in changes.items():
                setattr(emulator, name, value)
            refused = await fetch(session, url)
    return emulator, refused


async def test_the_concurrency_code_may_change_while_it_runs(
    session: aiohttp.ClientSession,
) -> None:
    _, refused = await concurrency_refused(session, concurrency_code=45780)

    assert_throttled(refused, 45780, "Too many concurrent requests")


async def test_a_concurrency_429_takes_no_token(session: aiohttp.ClientSession) -> None:
    async with FlexEmulator(rate_limit=0.001, burst=2, max_in_flight=1) as emulator:
        url = new_channel_url(emulator)
        async with held(session, emulator, url):  # the first token
            refused = await fetch(session, url)

        after = [(await fetch(session, url)).status for _ in range(2)]

    assert refused.status == 429
    assert after == [200, 429]  # the second token, then none
    assert [record.throttle for record in emulator.stats.log] == [
        "concurrency",
        None,
        None,
        "rate",
    ]


async def test_a_concurrency_429_is_answered_after_the_latency(
    session: aiohttp.ClientSession,
) -> None:
    emulator, refused = await concurrency_refused(session, latency=0.2)

    assert refused.status == 429
    record = emulator.stats.log[0]
    assert record.throttle == "concurrency"
    assert record.duration >= 0.2 - 1e-6  # by the server's own loop clock


# -- Twilio-Concurrent-Requests -----------------------------------------------------------


async def test_every_answer_says_how_many_requests_were_in_flight_when_it_arrived(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator() as emulator:
        url = new_channel_url(emulator)
        async with held(session, emulator, url, 2) as [first, second]:
            third = await fetch(session, url)
        alone = await fetch(session, url)

    assert [first.headers[HEADER], second.headers[HEADER], third.headers[HEADER]] == ["1", "2", "3"]
    assert alone.headers[HEADER] == "1"


async def test_429s_and_errors_carry_the_concurrent_requests_too(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator(max_in_flight=1) as emulator:
        url = new_channel_url(emulator)
        async with held(session, emulator, url):
            refused = await fetch(session, url)
        unauthenticated = await fetch(session, url, authorization=None)
        unknown = await fetch(session, f"{emulator.base_url}/v1/Nothing")

    assert (refused.status, refused.headers[HEADER]) == (429, "2")
    assert (unauthenticated.status, unauthenticated.headers[HEADER]) == (401, "1")
    assert (unknown.status, unknown.headers[HEADER]) == (404, "1")


async def test_the_emulators_own_endpoints_carry_no_concurrent_requests(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator() as emulator:
        stats = await fetch(session, f"{emulator.base_url}/__emulator__/stats")
        async with session.post(f"{emulator.base_url}/__emulator__/reset") as reset:
            reset_headers = reset.headers

    assert stats.status == 200
    assert HEADER not in stats.headers
    assert HEADER not in reset_headers


# -- the counters -------------------------------------------------------------------------


async def throttle_once_each(session: aiohttp.ClientSession, emulator: FlexEmulator) -> None:
    """One request refused for the rate, one for concurrency, one answered 200."""
    url = new_channel_url(emulator)
    async with held(session, emulator, url):  # the one token
        await fetch(session, url)  # concurrency
    await fetch(session, url)  # rate


async def test_the_stats_count_rate_and_concurrency_429s_apart(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator(rate_limit=0.001, burst=1, max_in_flight=1) as emulator:
        await throttle_once_each(session, emulator)

    stats = emulator.stats
    assert (stats.throttled, stats.rate_throttled, stats.concurrency_throttled) == (2, 1, 1)
    assert [(record.throttled, record.throttle) for record in stats.log] == [
        (True, "concurrency"),
        (False, None),
        (True, "rate"),
    ]


async def test_the_served_stats_count_rate_and_concurrency_429s_apart(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator(rate_limit=0.001, burst=1, max_in_flight=1) as emulator:
        await throttle_once_each(session, emulator)
        served = (await fetch(session, f"{emulator.base_url}/__emulator__/stats")).json()

    assert (served["throttled"], served["rate_throttled"], served["concurrency_throttled"]) == (
        2,
        1,
        1,
    )
    assert [record["throttle"] for record in served["log"]] == ["concurrency", None, "rate"]


async def test_a_reset_zeroes_the_throttle_counters(session: aiohttp.ClientSession) -> None:
    async with FlexEmulator(rate_limit=0.001, burst=1, max_in_flight=1) as emulator:
        await throttle_once_each(session, emulator)
        async with session.post(f"{emulator.base_url}/__emulator__/reset") as reset:
            assert reset.status == 204
        served = (await fetch(session, f"{emulator.base_url}/__emulator__/stats")).json()

    assert (served["throttled"], served["rate_throttled"], served["concurrency_throttled"]) == (
        0,
        0,
        0,
    )
    assert emulator.stats.log == []


# -- the launchers ------------------------------------------------------------------------


MODULE = [sys.executable, "-m", "flex_participants.emulator"]


async def start_command(*options: str) -> asyncio.subprocess.Process:
    """``flex-participants emulator OPTIONS``, started, its output piped."""
    return await asyncio.create_subprocess_exec(
        *cli_command(),
        "emulator",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(None),
    )


@contextlib.asynccontextmanager
async def stopped_by_ctrl_c(process: asyncio.subprocess.Process) -> AsyncIterator[None]:
    """Interrupt ``process`` as Ctrl-C would when the block ends; it must then exit 0."""
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        run = await finish(process)
    assert run.code == 0, run


@contextlib.asynccontextmanager
async def module_emulator(*options: str) -> AsyncIterator[str]:
    """``python -m flex_participants.emulator OPTIONS``, serving; its base URL."""
    process = await asyncio.create_subprocess_exec(
        *MODULE, *options, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    async with stopped_by_ctrl_c(process):
        async with asyncio.timeout(30):
            first = (await process.stdout.readline()).decode().strip()
        assert first.startswith("base_url="), first
        yield first.removeprefix("base_url=")


@contextlib.asynccontextmanager
async def command_emulator(*options: str) -> AsyncIterator[tuple[str, list[str]]]:
    """``flex-participants emulator OPTIONS``, serving; its base URL and what it printed."""
    process = await start_command(*options)
    assert process.stderr is not None
    lines: list[str] = []
    async with stopped_by_ctrl_c(process):
        async with asyncio.timeout(30):
            while not lines or lines[-1] != "Press Ctrl-C to stop.":
                line = await process.stderr.readline()
                assert line, "\n".join(lines)
                lines.append(line.decode().rstrip("\n"))
        [base_url] = [line.split()[-1] for line in lines if line.startswith("  base URL ")]
        yield base_url, lines


async def statuses_and_codes(
    session: aiohttp.ClientSession, url: str, n: int
) -> list[tuple[int, int | None]]:
    """``n`` requests one after the other: each one's status and Twilio error code."""
    answers = [await fetch(session, url) for _ in range(n)]
    return [(answer.status, answer.json().get("code")) for answer in answers]


async def in_flight(session: aiohttp.ClientSession, base_url: str, n: int) -> None:
    """Wait until the emulator at ``base_url`` has ``n`` requests in flight."""
    url = f"{base_url}/__emulator__/stats?log=0"
    async with asyncio.timeout(30):
        # Polled: another process's counters signal nothing a test could wait on.
        while (await fetch(session, url)).json()["in_flight"] != n:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_the_module_passes_rate_limit_and_burst_on(session: aiohttp.ClientSession) -> None:
    async with module_emulator("--rate-limit", "0.001", "--burst", "2") as base_url:
        # The path is not a channel: answered 404, as any request, after the limits.
        url = f"{base_url}/v1/Interactions/KD0/Channels/UO0/Participants"
        got = await statuses_and_codes(session, url, 3)

    assert got == [(404, 20404), (404, 20404), (429, 20429)]


async def test_the_module_passes_the_rate_schedule_on(session: aiohttp.ClientSession) -> None:
    # From the first request, 0.001/s: the burst of 2 given, and then none. Without the
    # schedule, 1,000/s would answer every request.
    options = ("--rate-limit", "1000", "--burst", "2", "--rate-schedule", "0:0.001")
    async with module_emulator(*options) as base_url:
        url = f"{base_url}/v1/Interactions/KD0/Channels/UO0/Participants"
        got = await statuses_and_codes(session, url, 3)

    assert got == [(404, 20404), (404, 20404), (429, 20429)]


async def test_the_module_passes_max_in_flight_and_concurrency_code_on(
    session: aiohttp.ClientSession,
) -> None:
    # The first request is held in its latency for 5 s: the second comes well within it,
    # however slow the machine, and the first is then given up.
    options = ("--max-in-flight", "1", "--concurrency-code", "45780", "--latency", "5000")
    async with module_emulator(*options) as base_url:
        url = f"{base_url}/v1/Interactions/KD0/Channels/UO0/Participants"
        first = asyncio.create_task(fetch(session, url))
        await in_flight(session, base_url, 1)  # the first is past the check, in its latency
        second = await fetch(session, url)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first

    assert_throttled(second, 45780, "Too many concurrent requests")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--rate-limit", "0"], "rate_limit"),
        (["--rate-limit", "nan"], "rate_limit"),
        (["--rate-limit", "fast"], "--rate-limit"),
        (["--rate-limit", "20", "--burst", "0"], "burst"),
        (["--burst", "5"], "rate_limit"),
        (["--concurrency-code", "429"], "--concurrency-code"),
        (["--max-in-flight", "0"], "max_in_flight"),
        (["--rate-schedule", "5:10"], "rate_limit"),
        (["--rate-limit", "20", "--rate-schedule", "5:10,3:20"], "increase"),
        (["--rate-limit", "20", "--rate-schedule", "5:0"], "rate"),
        (["--rate-limit", "20", "--rate-schedule", "soon"], "--rate-schedule"),
    ],
)
def test_the_module_refuses_bad_limits_with_exit_2(options: list[str], message: str) -> None:
    run = subprocess.run(  # noqa: S603 - our own module, our own arguments
        [*MODULE, *options], capture_output=True, text=True, timeout=30, check=False
    )

    assert run.returncode == 2
    assert re.search(r"error: .*" + re.escape(message), run.stderr), run.stderr


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is not installed")
async def test_the_command_passes_rate_limit_and_burst_on(session: aiohttp.ClientSession) -> None:
    async with command_emulator("--rate-limit", "0.001", "--burst", "2") as (base_url, lines):
        url = f"{base_url}/v1/Interactions/KD0/Channels/UO0/Participants"
        got = await statuses_and_codes(session, url, 3)

    assert "  rate limit   0.001 requests/s, burst 2" in lines
    assert got == [(404, 20404), (404, 20404), (429, 20429)]


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is not installed")
@pytest.mark.parametrize(
    ("options", "line"),
    [
        (
            ("--max-in-flight", "3", "--concurrency-code", "45780"),
            "  concurrency  3 at once (429 code 45780)",
        ),
        (
            ("--rate-limit", "20", "--rate-schedule", "5:10,13:20"),
            "  schedule     10/s from 5 s, 20/s from 13 s (after the first request)",
        ),
    ],
)
async def test_the_command_names_the_limits_it_passes_on(
    options: tuple[str, ...], line: str
) -> None:
    async with command_emulator(*options) as (_, lines):
        pass

    assert line in lines


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is not installed")
async def test_the_command_without_limits_names_none() -> None:
    async with command_emulator() as (_, lines):
        pass

    assert not [
        line for line in lines if "rate limit" in line or "at once" in line or "schedule" in line
    ]


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is not installed")
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--rate-limit", "0"], "--rate-limit"),
        (["--rate-limit", "20", "--burst", "0"], "--burst"),
        (["--burst", "5"], "burst"),
        (["--concurrency-code", "429"], "--concurrency-code"),
    ],
)
async def test_the_command_refuses_bad_limits_with_exit_2(options: list[str], message: str) -> None:
    run = await finish(await start_command(*options))

    assert run.code == 2, run
    assert message in run.stderr
