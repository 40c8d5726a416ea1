"""`_limit`: the adaptive limiter: slots in arrival order, 429s halve the level, pacing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from flex_participants import _limit
from flex_participants._errors import InvalidArgumentError
from flex_participants._limit import (
    DOCUMENTED_RATE,
    AdaptiveLimiter,
    Limiter,
    Throttle,
    _Evidence,
    _RateControl,
    default_burst,
)
from flex_participants.emulator._budget import TokenBucket

from .helpers import VirtualTimeLoop, in_virtual_time

T = TypeVar("T")


async def settle() -> None:
    """Let every task that can run, run until it blocks again."""
    for _ in range(10):
        await asyncio.sleep(0)


class Holder:
    """A task that takes a slot and keeps it until told to give it back."""

    def __init__(
        self, limiter: AdaptiveLimiter, name: object = None, log: list[object] | None = None
    ) -> None:
        self.limiter = limiter
        self.name = name
        self.log = log
        self.acquired = asyncio.Event()
        self.done = asyncio.Event()
        self.throttled = False
        self.in_flight_when_acquired = -1
        self.level_when_acquired = -1
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        permit = await self.limiter.acquire()
        self.in_flight_when_acquired = self.limiter.in_flight
        self.level_when_acquired = self.limiter.level
        if self.log is not None:
            self.log.append(self.name)
        self.acquired.set()
        await self.done.wait()
        await self.limiter.release(permit, throttled=self.throttled)

    async def finish(self, *, throttled: bool = False) -> None:
        """Give the slot back and wait until it is given back."""
        self.throttled = throttled
        self.done.set()
        await self.task


async def holders(
    limiter: AdaptiveLimiter, n: int, log: list[object] | None = None
) -> list[Holder]:
    """``n`` holders, queued strictly in order."""
    started = []
    for index in range(n):
        started.append(Holder(limiter, index, log))
        await settle()
    return started


async def cycle(limiter: AdaptiveLimiter, *, throttled: bool = False) -> None:
    """One request: take a slot and give it straight back."""
    permit = await limiter.acquire()
    await limiter.release(permit, throttled=throttled)


# Construction


def test_the_adaptive_limiter_is_a_limiter() -> None:
    assert isinstance(AdaptiveLimiter(1), Limiter)


def test_a_new_limiter_starts_at_max_concurrency_with_nothing_in_flight() -> None:
    limiter = AdaptiveLimiter(5)

    assert (limiter.level, limiter.max_concurrency, limiter.in_flight) == (5, 5, 0)
    assert (limiter.peak_in_flight, limiter.throttled) == (0, 0)


def test_repr_shows_level_in_flight_and_waiting() -> None:
    assert repr(AdaptiveLimiter(3)) == "<AdaptiveLimiter level=3/3 in_flight=0 waiting=0>"


@pytest.mark.parametrize("value", [0, -1, 1.5, 2.0, True, "2", None], ids=repr)
def test_max_concurrency_must_be_an_integer_of_at_least_one(value: Any) -> None:
    with pytest.raises(ValueError, match="max_concurrency must be an integer >= 1"):
        AdaptiveLimiter(value)


@pytest.mark.parametrize("value", [0, 0.0, -1, math.inf, math.nan, "5"], ids=repr)
def test_rate_limit_must_be_a_finite_number_above_zero(value: Any) -> None:
    with pytest.raises(
        InvalidArgumentError, match="rate_limit must be a finite number of requests per second > 0"
    ):
        AdaptiveLimiter(1, rate_limit=value)


# Slots


async def test_no_more_than_level_requests_are_in_flight() -> None:
    limiter = AdaptiveLimiter(3)
    started = await holders(limiter, 10)

    assert sum(h.acquired.is_set() for h in started) == 3
    assert limiter.in_flight == 3
    for holder in started:
        await holder.finish()
        await settle()
        assert limiter.in_flight <= 3
    assert all(h.in_flight_when_acquired <= 3 for h in started)
    assert limiter.in_flight == 0
    assert limiter.peak_in_flight == 3


async def test_a_released_slot_goes_to_the_first_waiter() -> None:
    limiter = AdaptiveLimiter(1)
    first, second, third = await holders(limiter, 3)

    await first.finish()
    await settle()

    assert second.acquired.is_set()
    assert not third.acquired.is_set()


async def test_waiters_are_served_in_arrival_order() -> None:
    limiter = AdaptiveLimiter(2)
    log: list[object] = []
    started = await holders(limiter, 8, log)

    for holder in started:
        await holder.finish()
        await settle()

    assert log == list(range(8))


async def test_a_newcomer_does_not_jump_the_queue_while_a_slot_is_being_handed_over() -> None:
    limiter = AdaptiveLimiter(1)
    log: list[object] = []
    permit = await limiter.acquire()
    (waiter,) = await holders(limiter, 1, log)

    await limiter.release(permit, throttled=False)  # does not yield: the waiter has not run yet
    newcomer = Holder(limiter, "newcomer", log)
    await settle()

    assert log == [0]
    assert not newcomer.acquired.is_set()
    await waiter.finish()
    await newcomer.finish()
    assert log == [0, "newcomer"]


async def test_a_cancelled_waiter_leaves_no_slot_taken_and_no_one_waiting() -> None:
    limiter = AdaptiveLimiter(1)
    holder, waiter = await holders(limiter, 2)

    waiter.task.cancel()
    await settle()
    await holder.finish()

    assert waiter.task.cancelled()
    assert limiter.in_flight == 0
    assert "waiting=0" in repr(limiter)
    newcomer = Holder(limiter)
    await settle()
    assert newcomer.acquired.is_set()
    await newcomer.finish()


async def test_a_cancelled_waiter_does_not_take_the_next_waiters_turn() -> None:
    limiter = AdaptiveLimiter(1)
    holder, cancelled, patient = await holders(limiter, 3)

    cancelled.task.cancel()
    await settle()
    await holder.finish()
    await settle()

    assert patient.acquired.is_set()
    assert limiter.in_flight == 1
    await patient.finish()
    assert limiter.in_flight == 0


async def test_a_slot_handed_over_as_its_waiter_is_cancelled_passes_to_the_next() -> None:
    limiter = AdaptiveLimiter(1)
    permit = await limiter.acquire()
    unlucky, patient = await holders(limiter, 2)

    await limiter.release(permit, throttled=False)  # hands the slot to `unlucky`, without yielding
    unlucky.task.cancel()  # cancelled before it resumes with the slot
    await settle()

    assert unlucky.task.cancelled()
    assert not unlucky.acquired.is_set()
    assert patient.acquired.is_set()
    assert limiter.in_flight == 1
    await patient.finish()
    assert limiter.in_flight == 0


async def test_a_slot_handed_over_as_the_last_waiter_is_cancelled_is_freed() -> None:
    limiter = AdaptiveLimiter(1)
    permit = await limiter.acquire()
    (unlucky,) = await holders(limiter, 1)

    await limiter.release(permit, throttled=False)
    unlucky.task.cancel()
    await settle()

    assert unlucky.task.cancelled()
    assert not unlucky.acquired.is_set()
    assert limiter.in_flight == 0
    assert "waiting=0" in repr(limiter)
    await cycle(limiter)


async def test_cancelling_many_waiters_at_once_leaks_nothing() -> None:
    limiter = AdaptiveLimiter(2)
    started = await holders(limiter, 10)

    for holder in started[2::2]:
        holder.task.cancel()
    for holder in started[:2]:
        holder.done.set()
    await settle()
    for holder in started[1::2]:
        await holder.finish()
    await settle()

    assert limiter.in_flight == 0
    assert "waiting=0" in repr(limiter)
    assert limiter.peak_in_flight == 2


async def test_peak_in_flight_is_the_most_slots_taken_at_once() -> None:
    limiter = AdaptiveLimiter(10)
    first = await holders(limiter, 4)
    for holder in first:
        await holder.finish()
    second = await holders(limiter, 2)
    for holder in second:
        await holder.finish()

    assert limiter.peak_in_flight == 4


# Adapting the level


async def test_a_429_halves_the_level() -> None:
    limiter = AdaptiveLimiter(8)

    await cycle(limiter, throttled=True)

    assert limiter.level == 4
    assert limiter.throttled == 1


async def test_the_429s_of_requests_sent_before_a_decrease_count_once() -> None:
    limiter = AdaptiveLimiter(8)
    permits = [await limiter.acquire() for _ in range(8)]

    for permit in permits:
        await limiter.release(permit, throttled=True)

    assert limiter.level == 4
    assert limiter.throttled == 8


async def test_a_429_of_a_request_sent_after_a_decrease_halves_again() -> None:
    limiter = AdaptiveLimiter(8)
    before = await limiter.acquire()
    await cycle(limiter, throttled=True)

    await limiter.release(before, throttled=True)
    assert limiter.level == 4
    await cycle(limiter, throttled=True)

    assert limiter.level == 2
    assert limiter.throttled == 3


async def test_the_level_never_falls_below_one() -> None:
    limiter = AdaptiveLimiter(4)

    for _ in range(10):
        await cycle(limiter, throttled=True)

    assert limiter.level == 1
    assert limiter.throttled == 10
    await cycle(limiter)


async def test_after_a_decrease_no_slot_is_granted_until_in_flight_drops_below_the_new_level() -> (
    None
):
    limiter = AdaptiveLimiter(4)
    started = await holders(limiter, 5)
    waiter = started[4]

    await started[0].finish(throttled=True)  # level 2, 3 still in flight
    await settle()
    assert limiter.level == 2
    assert not waiter.acquired.is_set()
    await started[1].finish()  # 2 in flight
    await settle()
    assert not waiter.acquired.is_set()
    await started[2].finish()  # 1 in flight: room under the new level
    await settle()

    assert waiter.acquired.is_set()
    assert waiter.in_flight_when_acquired <= waiter.level_when_acquired
    await started[3].finish()
    await waiter.finish()


async def busy_round(limiter: AdaptiveLimiter) -> None:
    """Fill the window, then answer every request with success."""
    permits = [await limiter.acquire() for _ in range(limiter.level)]
    for permit in permits:
        await limiter.release(permit, throttled=False)


async def cycle_with_window_full(limiter: AdaptiveLimiter, times: int) -> None:
    """``times`` successes, each released while the rest of the window is in flight."""
    held = [await limiter.acquire() for _ in range(limiter.level - 1)]
    for _ in range(times):
        await cycle(limiter)
    for permit in held:
        await limiter.release(permit, throttled=False)


async def halved_to(level: int, max_concurrency: int) -> AdaptiveLimiter:
    limiter = AdaptiveLimiter(max_concurrency)
    while limiter.level > level:
        await cycle(limiter, throttled=True)
    assert limiter.level == level
    return limiter


async def test_success_with_the_window_full_grows_the_level_by_growth_over_level() -> None:
    # Each success adds _GROWTH / level: from 4, at most _GROWTH / 4 a success,
    # at least _GROWTH / 5 until the level reaches 5.
    limiter = await halved_to(4, 8)
    too_few = math.ceil(4 / _limit._GROWTH) - 1
    enough = math.ceil(5 / _limit._GROWTH)

    await cycle_with_window_full(limiter, too_few)
    assert limiter.level == 4
    await cycle_with_window_full(limiter, enough - too_few)
    assert limiter.level == 5


async def test_success_with_the_window_mostly_empty_does_not_grow_the_level() -> None:
    limiter = await halved_to(4, 8)

    for _ in range(100):
        await cycle(limiter)

    assert limiter.level == 4


async def test_steady_success_grows_the_level_back_to_max_concurrency_and_no_further() -> None:
    limiter = await halved_to(1, 6)

    for _ in range(200):
        await busy_round(limiter)

    assert limiter.level == 6
    assert limiter.max_concurrency == 6


async def test_the_level_never_exceeds_max_concurrency() -> None:
    limiter = AdaptiveLimiter(3)

    for _ in range(50):
        await busy_round(limiter)

    assert limiter.level == 3
    assert limiter.peak_in_flight == 3


# Pacing


def start_times(limiter: AdaptiveLimiter, n: int) -> Callable[[], Coroutine[Any, Any, list[float]]]:
    """``n`` concurrent requests; the loop time at which each one got its slot."""

    async def run() -> list[float]:
        loop = asyncio.get_running_loop()
        started: list[float] = []

        async def request() -> None:
            await limiter.acquire()
            started.append(loop.time())
            await limiter.release(None, throttled=False)

        async with asyncio.TaskGroup() as group:
            for _ in range(n):
                group.create_task(request())
        return [t - 1000.0 for t in started]

    return run


def test_rate_limit_spaces_concurrent_starts_by_its_interval() -> None:
    limiter = AdaptiveLimiter(10, rate_limit=4, burst=1)

    starts = in_virtual_time(start_times(limiter, 6))

    assert starts == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.25])


def test_rate_limit_paces_a_single_caller_too() -> None:
    limiter = AdaptiveLimiter(1, rate_limit=10, burst=1)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        starts = []
        for _ in range(4):
            await cycle(limiter)
            starts.append(loop.time() - 1000.0)
        return starts

    assert in_virtual_time(main) == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_rate_limit_saves_up_no_burst_while_idle() -> None:
    limiter = AdaptiveLimiter(10, rate_limit=2, burst=1)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        await cycle(limiter)
        await asyncio.sleep(60)
        starts = await start_times(limiter, 3)()
        return [*starts, loop.time() - 1000.0]

    *starts, end = in_virtual_time(main)
    assert starts == pytest.approx([60.0, 60.5, 61.0])
    assert end == pytest.approx(61.0)


def test_without_rate_limit_requests_start_at_once() -> None:
    limiter = AdaptiveLimiter(10)

    assert in_virtual_time(start_times(limiter, 5)) == [0.0] * 5


def test_pacing_comes_before_waiting_for_a_slot() -> None:
    limiter = AdaptiveLimiter(1, rate_limit=100, burst=1)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        holder = Holder(limiter)
        await holder.acquired.wait()
        waiter = Holder(limiter)
        await asyncio.sleep(5)  # long past the waiter's paced start
        assert not waiter.acquired.is_set()
        await holder.finish()
        await waiter.acquired.wait()
        granted = loop.time() - 1000.0
        await waiter.finish()
        return [granted]

    # The slot is granted the moment it is freed: no second wait for pacing.
    assert in_virtual_time(main) == pytest.approx([5.0])


def test_waiters_cancelled_while_paced_leave_no_debt_for_those_after_them() -> None:
    limiter = AdaptiveLimiter(100, rate_limit=10, burst=1)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        await cycle(limiter)  # the start at 0.0
        # 50 callers queue for pacing and give up (a timeout, a closed stream) ...
        quitters = [asyncio.create_task(limiter.acquire()) for _ in range(50)]
        await asyncio.sleep(0)
        for task in quitters:
            task.cancel()
        await asyncio.gather(*quitters, return_exceptions=True)
        # ... and the next caller starts on the schedule of the last start, not 5 s later.
        await cycle(limiter)
        starts = [loop.time() - 1000.0]
        await cycle(limiter)
        starts.append(loop.time() - 1000.0)
        return starts

    assert in_virtual_time(main) == pytest.approx([0.1, 0.2])


def test_a_start_granted_as_its_waiter_is_cancelled_passes_to_the_next_waiter() -> None:
    limiter = AdaptiveLimiter(100, rate_limit=10, burst=1)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        await cycle(limiter)
        first = asyncio.create_task(limiter.acquire())
        second = asyncio.create_task(cycle(limiter))
        await asyncio.sleep(0.1)  # the timer grants `first` its start ...
        first.cancel()  # ... which it never uses
        await second
        return [loop.time() - 1000.0]

    assert in_virtual_time(main) == pytest.approx([0.1])


def test_pacing_cancellation_under_load_never_lets_starts_come_closer_than_the_interval() -> None:
    limiter = AdaptiveLimiter(100, rate_limit=20, burst=1)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        starts: list[float] = []

        async def request(n: int) -> None:
            await limiter.acquire()
            starts.append(loop.time())
            await limiter.release(None, throttled=False)

        tasks = [asyncio.create_task(request(n)) for n in range(60)]
        await asyncio.sleep(0.31)
        for task in tasks[10::3]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return starts

    starts = in_virtual_time(main)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.05 - 1e-9
    assert max(gaps) <= 0.05 + 1e-9  # and no hole where a cancelled waiter was


def test_a_waiter_cancelled_in_the_slot_wait_hands_its_paced_start_back() -> None:
    limiter = AdaptiveLimiter(1, rate_limit=10, burst=1)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        holder = Holder(limiter)
        await holder.acquired.wait()  # the start at 0.0, and the only slot
        quitter = asyncio.create_task(limiter.acquire())  # paced at 0.1, then waits for the slot
        await asyncio.sleep(0.15)
        quitter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await quitter
        await holder.finish()
        await cycle(limiter)
        return loop.time() - 1000.0

    # The quitter's start at 0.1 went unused: the next caller may start at once, at 0.15.
    assert in_virtual_time(main) == pytest.approx(0.15)


# Bursts


@pytest.mark.parametrize(
    ("rate", "burst"), [(0.5, 1), (4, 1), (9.99, 1), (10, 2), (20, 4), (24.99, 4), (100, 4)]
)
def test_the_default_burst_is_a_fifth_of_a_second_of_the_rate_from_one_to_four(
    rate: float, burst: int
) -> None:
    assert default_burst(rate) == burst
    assert AdaptiveLimiter(1, rate_limit=rate).burst == burst


def test_a_burst_lets_that_many_start_at_once_then_the_rate_spaces_the_rest() -> None:
    limiter = AdaptiveLimiter(10, rate_limit=4, burst=3)

    starts = in_virtual_time(start_times(limiter, 6))

    assert starts == pytest.approx([0.0, 0.0, 0.0, 0.25, 0.5, 0.75])


def test_a_burst_saved_up_while_idle_is_never_more_than_burst() -> None:
    limiter = AdaptiveLimiter(10, rate_limit=10, burst=2)

    async def main() -> list[float]:
        await asyncio.sleep(60)  # a long pause: the bucket fills, to 2 and no more
        return await start_times(limiter, 4)()

    assert in_virtual_time(main) == pytest.approx([60.0, 60.0, 60.1, 60.2])


# -- the schedule follows the server's, which counts from when requests arrive -----------


def send(limiter: AdaptiveLimiter, permit: object, *delays: float) -> Callable[[], Any]:
    """A coroutine function that sends ``permit``'s request after each of ``delays`` in
    turn (aiohttp sends a request again when a kept-alive connection turns out closed),
    telling the limiter each time, as the client's own trace config does."""
    clock = limiter._send_clock(permit)
    assert clock is not None

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for delay in delays:
            await asyncio.sleep(delay)
            clock(loop.time())

    return run


@given(
    rate=st.floats(1.0, 100.0),
    burst=st.integers(1, 5),
    sends=st.lists(
        st.tuples(st.floats(0.0, 0.5), st.none() | st.floats(0.0, 0.2), st.floats(0.0, 0.3)),
        min_size=1,
        max_size=12,
    ),
)
def test_requests_that_go_out_late_keep_to_a_server_bucket_that_counts_their_arrival(
    rate: float, burst: int, sends: list[tuple[float, float | None, float]]
) -> None:
    # One request after another, each going out late (or twice: the server then sees the
    # second), each answered some time after it arrived. A server bucket of the same rate
    # and size, fed the arrivals, accepts every one: and, when a request had to wait for
    # its start, it started the moment that bucket held a token again, not later.
    limiter = AdaptiveLimiter(1, rate_limit=rate, burst=burst)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = TokenBucket(rate, burst, loop.time)
        for late, again, answer in sends:
            asked = loop.time()
            permit = await limiter.acquire()
            if loop.time() > asked:  # it waited: the server's bucket has only now a token
                assert 1.0 - 1e-6 <= server.tokens < 1.0 + 1e-6
            delays = (late,) if again is None else (late, again)
            await send(limiter, permit, *delays)()
            assert server.take()
            await asyncio.sleep(answer)
            await limiter.release(permit, throttled=False)

    in_virtual_time(main)


def test_requests_that_overlap_move_the_schedule_on_once_between_them() -> None:
    # A starts at 0 and goes out at 0.3; B starts at 0.2 and goes out at 0.5. The server's
    # bucket of one token is then next full at 0.7: B's lateness is counted from where A's
    # left the schedule, not again from B's start.
    limiter = AdaptiveLimiter(3, rate_limit=5, burst=1)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        first = await limiter.acquire()
        sending = asyncio.create_task(send(limiter, first, 0.3)())
        second = await limiter.acquire()
        assert loop.time() - 1000.0 == pytest.approx(0.2)
        await send(limiter, second, 0.3)()
        await sending
        await limiter.acquire()
        return loop.time() - 1000.0

    assert in_virtual_time(main) == pytest.approx(0.7)


def test_a_request_that_goes_out_on_time_moves_nothing() -> None:
    limiter = AdaptiveLimiter(1, rate_limit=4, burst=1)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        starts = []
        for _ in range(3):
            permit = await limiter.acquire()
            starts.append(loop.time() - 1000.0)
            await send(limiter, permit, 0.0)()
            await limiter.release(permit, throttled=False)
        return starts

    assert in_virtual_time(main) == pytest.approx([0.0, 0.25, 0.5])


def test_without_a_rate_there_is_no_schedule_to_move() -> None:
    limiter = AdaptiveLimiter(1)

    async def main() -> object:
        return limiter._send_clock(await limiter.acquire())

    assert in_virtual_time(main) is None


@pytest.mark.parametrize("burst", [0, -1, 1.5, True, "2"], ids=repr)
def test_burst_must_be_an_integer_of_at_least_one(burst: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="burst must be an integer >= 1"):
        AdaptiveLimiter(1, rate_limit=5, burst=burst)


def test_a_burst_without_a_rate_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="give rate_limit too"):
        AdaptiveLimiter(1, burst=3)


def test_an_adaptive_rate_starts_at_the_documented_budget() -> None:
    limiter = AdaptiveLimiter(10, rate_limit="adaptive")

    assert (limiter.rate, limiter.burst) == (DOCUMENTED_RATE, default_burst(DOCUMENTED_RATE))


def test_without_a_rate_there_is_no_rate_nor_burst() -> None:
    assert (AdaptiveLimiter(3).rate, AdaptiveLimiter(3).burst) == (None, None)


# Which 429 adapts what


def answered_after(
    limiter: AdaptiveLimiter, seconds: float, **release: Any
) -> Callable[[], Coroutine[Any, Any, None]]:
    """One request through ``limiter`` answered after ``seconds`` (in virtual time), then
    released with ``release``."""

    async def main() -> None:
        permit = await limiter.acquire()
        await asyncio.sleep(seconds)
        await limiter.release(permit, **release)

    return main


def test_a_rate_429_lowers_the_rate_and_leaves_the_level() -> None:
    limiter = AdaptiveLimiter(8, rate_limit=10, burst=1)

    in_virtual_time(answered_after(limiter, 1.0, throttled=True, throttle=Throttle(code=20429)))

    # A told rate is proven: 5% less. 9.5 per second at 1 s answers need more than 8 slots.
    assert (limiter.level, limiter.rate, limiter.throttled) == (8, 9.5, 1)


def test_a_429_without_a_code_is_taken_for_the_rate() -> None:
    limiter = AdaptiveLimiter(8, rate_limit=10, burst=1)

    in_virtual_time(answered_after(limiter, 1.0, throttled=True))

    assert (limiter.level, limiter.rate) == (8, 9.5)


def test_a_concurrency_429_halves_the_level_and_leaves_the_rate() -> None:
    limiter = AdaptiveLimiter(8, rate_limit=10)

    in_virtual_time(answered_after(limiter, 1.0, throttled=True, throttle=Throttle(code=45780)))

    assert (limiter.level, limiter.rate) == (4, 10.0)


async def test_the_rate_429s_of_requests_started_before_a_decrease_count_once() -> None:
    limiter = AdaptiveLimiter(8, rate_limit=10, burst=4)
    permits = [await limiter.acquire() for _ in range(4)]

    for permit in permits:
        await limiter.release(permit, throttled=True, throttle=Throttle(code=20429))

    assert limiter.rate == 9.5
    assert limiter.throttled == 4


def test_after_a_rate_429_the_bucket_is_empty_so_no_burst_follows() -> None:
    limiter = AdaptiveLimiter(10, rate_limit=10, burst=4)

    async def main() -> list[float]:
        permit = await limiter.acquire()
        await limiter.release(permit, throttled=True, throttle=Throttle(code=20429))
        return await start_times(limiter, 3)()

    # 9.5 per second now, each one interval after the last: the 3 tokens left are gone.
    assert in_virtual_time(main) == pytest.approx([1 / 9.5, 2 / 9.5, 3 / 9.5])


async def test_a_429_to_a_start_inside_a_burst_halves_the_burst() -> None:
    limiter = AdaptiveLimiter(10, rate_limit=10, burst=4)

    await limiter.acquire()
    permit = await limiter.acquire()  # at the same moment: on the burst
    await limiter.release(permit, throttled=True, throttle=Throttle(code=20429))

    assert limiter.burst == 2


def test_a_429_to_a_start_that_queued_for_its_token_keeps_the_burst() -> None:
    limiter = AdaptiveLimiter(10, rate_limit=10, burst=2)

    async def main() -> int | None:
        for _ in range(2):
            await cycle(limiter)  # the burst is spent
        permit = await limiter.acquire()  # this one queues for its token
        await limiter.release(permit, throttled=True, throttle=Throttle(code=20429))
        return limiter.burst

    assert in_virtual_time(main) == 2


async def test_a_told_rate_is_never_exceeded_however_long_requests_queue() -> None:
    control = _RateControl(20.0, ceiling=20.0)

    assert {control.rate_at(t) for t in (0, 10, 100, 10_000)} == {20.0}


# How the rate adapts (the rule, on queueing time)


def test_an_unknown_budget_is_sought_by_doubling_every_few_answer_times_of_queueing() -> None:
    control = _RateControl(DOCUMENTED_RATE, ceiling=None)
    control.latency = 0.2
    doubling = _limit._SEARCH_DOUBLING * 0.2

    assert control.searching
    assert control.rate_at(doubling) == pytest.approx(2 * DOCUMENTED_RATE)
    assert control.rate_at(3 * doubling) == pytest.approx(8 * DOCUMENTED_RATE)


def test_the_search_waits_for_an_answer_time_to_go_by() -> None:
    control = _RateControl(DOCUMENTED_RATE, ceiling=None)

    assert control.rate_at(10.0) == DOCUMENTED_RATE  # no answer yet: no answer time


def test_the_search_doubles_at_most_every_tenth_of_a_second_however_fast_the_answers() -> None:
    control = _RateControl(DOCUMENTED_RATE, ceiling=None)
    control.latency = 0.0

    assert control.rate_at(_limit._FASTEST_DOUBLING) == pytest.approx(2 * DOCUMENTED_RATE)


def test_a_told_rate_is_not_sought() -> None:
    control = _RateControl(20.0, ceiling=20.0)
    control.latency = 0.2

    assert not control.searching
    assert control.rate_at(100.0) == 20.0


def test_a_429_ends_the_search_at_the_rate_the_server_was_seen_to_accept() -> None:
    control = _RateControl(20.0, ceiling=None)
    control.latency = 0.2
    started_at = control.rate_at(1.0)

    assert control.throttled(0, started_at, saturated=1.0, accepted=31.0)

    assert (control.rate, control.searching) == (31.0, False)


def test_a_decrease_to_the_evidence_takes_at_least_a_twentieth() -> None:
    control = _RateControl(20.0, ceiling=None)

    assert control.throttled(0, 20.0, saturated=0.5, accepted=25.0)

    assert control.rate == pytest.approx(19.0)


def test_a_decrease_to_the_evidence_keeps_at_least_a_tenth_of_the_rate() -> None:
    control = _RateControl(20.0, ceiling=None)

    assert control.throttled(0, 20.0, saturated=0.5, accepted=0.0)

    assert control.rate == pytest.approx(2.0)


def test_after_a_decrease_the_rate_is_held_then_probed_up_slowly() -> None:
    control = _RateControl(20.0, ceiling=None)
    control.throttled(0, 20.0, saturated=0.0, accepted=15.0)

    assert control.rate_at(_limit._HOLD) == 15.0
    assert control.rate_at(_limit._HOLD + _limit._PROBE / 5) == pytest.approx(15.0 * 1.008)
    assert control.rate_at(_limit._HOLD + _limit._PROBE) == pytest.approx(30.0)


def test_a_first_429_with_nothing_proven_halves_the_rate() -> None:
    control = _RateControl(20.0, ceiling=None)

    assert control.throttled(0, 20.0, saturated=0.5)
    assert control.rate == 10.0


def test_a_429_while_probing_goes_back_to_the_highest_rate_proven_below_it() -> None:
    control = _RateControl(20.0, ceiling=None)
    control.throttled(0, 40.0, saturated=0.0, accepted=20.0)  # the search ends at 20
    probing = _limit._HOLD + 4.0
    started_at = control.rate_at(probing)
    proven = 20.0 * (1 + ((probing - _limit._PROVEN - _limit._HOLD) / _limit._PROBE) ** 3)

    assert control.throttled(1, started_at, saturated=probing)

    assert control.rate == pytest.approx(proven)
    assert 20.0 < control.rate < started_at


def test_a_429_while_probing_goes_no_lower_than_the_evidence_says() -> None:
    control = _RateControl(20.0, ceiling=None)
    control.throttled(0, 40.0, saturated=0.0, accepted=20.0)
    probing = _limit._HOLD + 4.0
    started_at = control.rate_at(probing)

    assert control.throttled(1, started_at, saturated=probing, accepted=started_at * 0.97)

    assert control.rate == pytest.approx(started_at * _limit._NEAR_DECREASE)


def test_a_429_to_a_told_rate_lowers_it_by_a_twentieth() -> None:
    control = _RateControl(20.0, ceiling=20.0)  # a rate the caller gave is proven

    assert control.throttled(0, 20.0, saturated=0.1)

    assert control.rate == pytest.approx(19.0)


def test_a_429_to_a_proven_rate_lowers_it_by_a_twentieth() -> None:
    control = _RateControl(20.0, ceiling=None)
    control.throttled(0, 40.0, saturated=0.0, accepted=20.0)
    control.rate_at(3.0)  # 20 has been used for 3 s with no 429: proven

    assert control.throttled(1, 20.0, saturated=3.0)

    assert control.rate == pytest.approx(19.0)


def test_once_evidence_has_sized_a_decrease_a_429_without_any_takes_a_twentieth() -> None:
    control = _RateControl(20.0, ceiling=None)
    control.throttled(0, 40.0, saturated=0.0, accepted=20.0)

    assert control.throttled(1, 20.0, saturated=0.5)  # too soon to be proven, no evidence

    assert control.rate == pytest.approx(19.0)


def test_a_429_of_an_older_generation_changes_nothing() -> None:
    control = _RateControl(20.0, ceiling=None)
    control.throttled(0, 20.0, saturated=0.1)

    assert not control.throttled(0, 20.0, saturated=0.2)
    assert (control.rate, control.generation) == (10.0, 1)


def test_the_rate_never_falls_below_its_floor() -> None:
    control = _RateControl(1.0, ceiling=None)
    for generation in range(20):
        control.throttled(generation, control.rate, saturated=0.0)

    assert control.rate == _limit._MIN_RATE


def test_while_nobody_queues_the_rate_does_not_grow() -> None:
    limiter = AdaptiveLimiter(10, rate_limit="adaptive")

    async def main() -> float | None:
        for _ in range(100):  # one request at a time, a second apart: never a queue
            await cycle(limiter)
            await asyncio.sleep(1)
        return limiter.rate

    assert in_virtual_time(main) == DOCUMENTED_RATE


def test_requests_queueing_for_an_unknown_budget_raise_it_while_none_is_refused() -> None:
    limiter = AdaptiveLimiter(100, rate_limit="adaptive")

    async def main() -> float | None:
        await asyncio.gather(*(answered_after(limiter, 0.2, throttled=False)() for _ in range(400)))
        return limiter.rate

    rate = in_virtual_time(main)
    assert rate is not None
    assert rate > 2 * DOCUMENTED_RATE


def test_a_429_never_raises_the_rate_above_a_told_rate_below_the_floor() -> None:
    limiter = AdaptiveLimiter(10, rate_limit=0.1, burst=1)

    async def main() -> list[float]:
        permit = await limiter.acquire()
        await limiter.release(permit, throttled=True, throttle=Throttle(code=20429))
        return await start_times(limiter, 2)()

    assert limiter.rate is None or limiter.rate <= 0.1
    assert in_virtual_time(main) == pytest.approx([10.0, 20.0])


@pytest.mark.parametrize("rate", [1e-7, 1e-320])
def test_a_rate_too_slow_to_schedule_is_refused(rate: float) -> None:
    with pytest.raises(InvalidArgumentError, match="at least 1e-06 requests per second"):
        AdaptiveLimiter(1, rate_limit=rate)


def test_a_late_timer_never_lets_starts_exceed_the_bucket() -> None:
    limiter = AdaptiveLimiter(100, rate_limit=10, burst=2)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        loop.call_later(0.25, loop.stall, 1.0)  # the loop is blocked for a second
        return await start_times(limiter, 12)()

    starts = in_virtual_time(main)
    for window in (0.0, 0.05, 0.1, 0.5, 1.0):
        most = max(sum(1 for t in starts if a <= t <= a + window + 1e-9) for a in starts)
        assert most <= 2 + 10 * window, (window, starts)


def test_a_waiter_cancelled_while_queued_for_a_token_frees_its_slot_for_the_next() -> None:
    limiter = AdaptiveLimiter(1, rate_limit=1, burst=1)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        await cycle(limiter)  # the token of 0.0 is spent
        quitter = asyncio.create_task(limiter.acquire())  # takes the one slot, waits for 1.0
        await asyncio.sleep(0.5)
        behind = asyncio.create_task(cycle(limiter))  # waits for the slot
        await asyncio.sleep(0.1)
        quitter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await quitter
        await behind
        assert limiter.in_flight == 0
        return loop.time() - 1000.0

    # The slot passed on at once; its token came when the bucket allowed, at 1.0.
    assert in_virtual_time(main) == pytest.approx(1.0)


def test_a_429_to_steady_traffic_below_the_rate_keeps_the_burst() -> None:
    limiter = AdaptiveLimiter(10, rate_limit=10, burst=4)

    async def main() -> int | None:
        for _ in range(5):  # one request every 0.1 s: each finds one token, never a burst
            await cycle(limiter)
            await asyncio.sleep(0.1)
        permit = await limiter.acquire()
        await limiter.release(permit, throttled=True, throttle=Throttle(code=20429))
        return limiter.burst

    assert in_virtual_time(main) == 4


def test_a_refund_of_a_start_given_before_another_changes_nothing() -> None:
    async def main() -> tuple[float, float]:
        bucket = _limit._Bucket(_RateControl(10.0, ceiling=10.0), burst=1)
        now = asyncio.get_running_loop().time()
        first = bucket._start(now)
        bucket._start(now)
        before = bucket._tat
        bucket.refund(first)  # stale: it would undo the second start
        return before, bucket._tat

    before, after = in_virtual_time(main)
    assert after == before


def test_no_start_is_refunded_across_a_change_of_rate() -> None:
    async def main() -> tuple[float, float]:
        bucket = _limit._Bucket(_RateControl(10.0, ceiling=10.0), burst=1)
        now = asyncio.get_running_loop().time()
        start = bucket._start(now)
        bucket.set_rate(5.0, now)
        before = bucket._tat
        bucket.refund(start)
        return before, bucket._tat

    before, after = in_virtual_time(main)
    assert after == before


# The slots a rate needs: rate x the answer time (Little's law)


def test_with_a_rate_the_level_is_what_the_rate_needs_at_the_answer_time() -> None:
    limiter = AdaptiveLimiter(500, rate_limit=20, burst=4)

    in_virtual_time(answered_after(limiter, 1.0, throttled=False))

    # 20 per second, each answered after 1 s: 20 x 1.25 in flight, the burst and one more.
    assert limiter.latency == pytest.approx(1.0)
    assert limiter.level == math.floor(20 * 1.0 * _limit._ROOM + 4 + 1)


def test_the_level_follows_the_answer_time_down() -> None:
    limiter = AdaptiveLimiter(500, rate_limit=20, burst=4)

    async def main() -> None:
        await answered_after(limiter, 2.0, throttled=False)()
        for _ in range(50):
            await answered_after(limiter, 0.1, throttled=False)()

    in_virtual_time(main)
    assert limiter.latency == pytest.approx(0.1, rel=0.01)
    assert limiter.level == math.floor(20 * 0.1 * _limit._ROOM + 4 + 1)


def test_what_a_rate_needs_never_lifts_the_level_above_max_concurrency() -> None:
    limiter = AdaptiveLimiter(12, rate_limit=100)

    in_virtual_time(answered_after(limiter, 2.0, throttled=False))

    assert limiter.level == 12


def test_a_concurrency_429_halves_the_slots_in_use_not_the_ceiling() -> None:
    limiter = AdaptiveLimiter(500, rate_limit=20, burst=4)

    in_virtual_time(answered_after(limiter, 1.0, throttled=True, throttle=Throttle(code=45780)))

    assert limiter.level == math.floor(20 * 1.0 * _limit._ROOM + 4 + 1) // 2


def test_after_a_concurrency_429_slower_answers_do_not_lift_the_level_back() -> None:
    # What the rate needs grows with the answer time; what the server's concurrency limit
    # left grows back only by successes with the window full.
    limiter = AdaptiveLimiter(500, rate_limit=20, burst=4)

    async def main() -> None:
        await answered_after(limiter, 1.0, throttled=True, throttle=Throttle(code=45780))()
        await answered_after(limiter, 5.0, throttled=False)()

    in_virtual_time(main)
    assert limiter.level == math.floor(20 * 1.0 * _limit._ROOM + 4 + 1) // 2


# What the server was seen to accept (the evidence a decrease is sized on)


def against_bucket(
    rate: float, burst: int, sent: float, seconds: float
) -> tuple[_Evidence, list[float]]:
    """Starts at ``sent`` a second for ``seconds`` against a token bucket of ``rate`` and
    ``burst``, each recorded as the bucket answered it; and the refused starts."""
    now = 0.0
    bucket = TokenBucket(rate, burst, lambda: now)
    evidence, refused = _Evidence(), []
    for i in range(math.floor(seconds * sent)):
        now = i / sent
        accepted = bucket.take()
        evidence.record(now, sent, accepted=accepted)
        if not accepted:
            refused.append(now)
    return evidence, refused


@given(
    rate=st.floats(2.0, 200.0),
    over=st.floats(1.2, 4.0),
    burst=st.integers(1, 10),
)
def test_the_delivery_rate_between_refusals_is_the_servers_rate_to_one_token_or_less(
    rate: float, over: float, burst: int
) -> None:
    sent = rate * over
    # At most the answers the evidence keeps.
    evidence, refused = against_bucket(rate, burst, sent=sent, seconds=min(5.0, 1000 / sent))
    between = (refused[-1] - refused[0]) * sent - (len(refused) - 1) if refused else 0

    delivered = evidence.delivered(latency=10.0)  # a horizon that holds every answer

    if len(refused) < 2 or round(between) < 4:
        assert delivered is None  # too little to say
    else:
        # The bucket was empty at the first refused start and at the last: what it made
        # between went to the requests it accepted, give or take the token on its way, unless
        # it was too small to hold what it made between two starts and spilled some.
        assert delivered is not None
        span = refused[-1] - refused[0]
        assert (delivered - rate) * span <= 1.0 + 1e-6
        if burst >= 1 + rate / sent:  # it can hold what it makes between two starts
            assert (rate - delivered) * span <= 1.0 + 1e-6


def test_a_delivery_rate_needs_two_refusals() -> None:
    evidence = _Evidence()
    for i in range(20):
        evidence.record(i * 0.05, 20.0, accepted=i != 10)

    assert evidence.delivered(latency=0.2) is None


def test_a_delivery_rate_needs_a_few_acceptances_between_its_refusals() -> None:
    evidence = _Evidence()
    for i, accepted in enumerate([False, True, True, True, False]):
        evidence.record(i * 0.05, 20.0, accepted=accepted)

    assert evidence.delivered(latency=0.2) is None


def test_a_pause_between_refusals_leaves_the_time_before_it_out() -> None:
    # Two stretches of refusals a second apart: in the pause the bucket may have refilled,
    # so only the later stretch says what the server's rate is.
    evidence, _ = against_bucket(10.0, 2, sent=20.0, seconds=2.0)
    for i in range(40):
        start = 3.0 + i / 40.0  # 40 a second against the same 10
        evidence.record(start, 40.0, accepted=i % 4 == 0)

    assert evidence.delivered(latency=0.2) == pytest.approx(10.0, rel=0.1)


def test_without_a_delivery_rate_the_accepted_share_of_the_last_answer_time_says() -> None:
    evidence = _Evidence()
    for i in range(10):
        evidence.record(1.0 + i * 0.02, 25.0, accepted=i not in (3, 7))  # 80% accepted
    evidence.record(0.0, 25.0, accepted=True)  # before the last answer time: left out

    assert evidence.delivered(latency=0.2) is None  # two refusals, three accepted between
    assert evidence.accepted(1.2, latency=0.2) == pytest.approx(20.0)


def test_too_few_answers_give_no_estimate() -> None:
    evidence = _Evidence()
    evidence.record(0.0, 20.0, accepted=False)

    assert evidence.accepted(0.0, latency=0.2) is None


class RateRule(RuleBasedStateMachine):
    """Any order of queueing, answers, 429s and later evidence, told a rate or not: the rate
    stays a finite number within its bounds, and no 429 nor evidence ever raises it."""

    def __init__(self) -> None:
        super().__init__()
        self.control = _RateControl(DOCUMENTED_RATE, ceiling=None)
        self.ceiling: float | None = None
        self.saturated = 0.0

    @initialize(told=st.one_of(st.none(), st.floats(0.01, 500.0)))
    def start(self, told: float | None) -> None:
        self.ceiling = told
        self.control = _RateControl(DOCUMENTED_RATE if told is None else told, ceiling=told)

    @rule(seconds=st.floats(0.0, 1e6), latency=st.one_of(st.none(), st.floats(0.0, 100.0)))
    def queue(self, seconds: float, latency: float | None) -> None:
        if latency is not None:
            self.control.latency = latency
        self.saturated += seconds
        self.control.rate_at(self.saturated)

    @rule(
        older=st.booleans(),
        scale=st.floats(0.0, 4.0),
        accepted=st.one_of(st.none(), st.floats(0.0, 1e5)),
    )
    def refused(self, older: bool, scale: float, accepted: float | None) -> None:
        control = self.control
        generation = max(0, control.generation - 1) if older else control.generation
        before = control.rate_at(self.saturated)
        control.throttled(generation, before * scale, self.saturated, accepted=accepted)
        assert control.rate <= before

    @rule(rate=st.floats(0.0, 1e5))
    def evidence(self, rate: float) -> None:
        before = self.control.rate_at(self.saturated)
        self.control.lower_to(rate, self.saturated)
        assert self.control.rate <= before

    @invariant()
    def within_bounds(self) -> None:
        rate = self.control.rate
        assert math.isfinite(rate)
        if self.ceiling is None:
            assert _limit._MIN_RATE <= rate <= _limit._MOST_RATE
        else:
            assert min(_limit._MIN_RATE, self.ceiling) <= rate <= self.ceiling


TestRateRule = RateRule.TestCase


def test_a_request_the_server_never_answered_is_no_answer_time() -> None:
    limiter = AdaptiveLimiter(10, rate_limit="adaptive")

    async def main() -> float | None:
        permit = await limiter.acquire()
        await asyncio.sleep(30.0)  # a timeout, say
        limiter._release_now(permit, throttled=False, answered=False)
        return limiter.latency

    assert in_virtual_time(main) is None


def test_a_concurrency_429_is_no_evidence_of_the_rate() -> None:
    limiter = AdaptiveLimiter(10, rate_limit="adaptive")

    async def main() -> None:
        for _ in range(8):
            permit = await limiter.acquire()
            await limiter.release(permit, throttled=True, throttle=Throttle(code=45780))

    in_virtual_time(main)
    assert limiter._evidence.accepted(1000.0, latency=1.0) is None
