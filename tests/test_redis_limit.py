"""RedisLimiter against a real redis-server: one budget shared by many limiters and processes.

Several limiters, each with its own Redis client, stand for several processes; the fleet test
runs real worker processes against one emulator. The server is started once per session
(``redis-server`` from PATH or /usr/bin, by the ``redis_server`` fixture of conftest.py);
without one, these tests are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import logging
import math
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import pytest_asyncio

pytest.importorskip("redis", reason="the redis extra is not installed: pip install -e '.[redis]'")

import redis as sync_redis
import redis.asyncio as aioredis

import flex_participants
from flex_participants import (
    ClientClosedError,
    Event,
    FlexClient,
    InvalidArgumentError,
    RequestFailed,
    ResponseReceived,
    RetryPolicy,
    Throttle,
    TransportError,
)
from flex_participants.emulator import FlexEmulator
from flex_participants.redis import RedisLimiter, _limiter

from .conftest import RedisServer, free_port, redis_server_or_skip, uninstalled
from .helpers import KD, hold_requests
from .proxy_servers import HeldRelay
from .server import PagedServer

T = TypeVar("T")

WORKER = Path(__file__).with_name("redis_fleet_worker.py")


@pytest_asyncio.fixture
async def connect(redis_server: RedisServer) -> AsyncIterator[Callable[[], aioredis.Redis]]:
    """``connect()`` gives a new client of the session's server (one per simulated process)."""
    clients: list[aioredis.Redis] = []

    def new() -> aioredis.Redis:
        clients.append(redis_server.client())
        return clients[-1]

    yield new
    for client in clients:
        await client.aclose()


@contextlib.asynccontextmanager
async def own_redis_server() -> AsyncIterator[tuple[RedisServer, aioredis.Redis]]:
    """A redis-server of the test's own, which it may stop, and a client of it, closed after."""
    with redis_server_or_skip() as server:
        client = server.client()
        try:
            yield server, client
        finally:
            await client.aclose()


@pytest.fixture
def key() -> str:
    """A key of its own for each test, so that no test sees another's slots."""
    return f"test-{uuid.uuid4().hex}"


async def queued(limiter: RedisLimiter, waiters: int) -> None:
    """Return once ``waiters`` waiters are queued in Redis for the limiter's key."""
    for _ in range(1000):
        if (await limiter.read_state()).waiting >= waiters:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{waiters} waiters were never queued")


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """Await with a deadline, so that a test fails instead of hanging."""
    async with asyncio.timeout(seconds):
        return await awaitable


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Return once ``condition()`` is true; fail after a long while."""
    for _ in range(2000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


def _microseconds(redis_time: Sequence[int]) -> int:
    seconds, microseconds = redis_time
    return seconds * 1_000_000 + microseconds


async def redis_now(client: aioredis.Redis) -> int:
    """Redis's clock, the one the limiter's scripts use, in microseconds since the epoch."""
    return _microseconds(await client.time())


async def until_redis_time(client: aioredis.Redis, target: float) -> None:
    """Return once Redis's clock has passed ``target`` (microseconds since the epoch)."""

    async def passed() -> bool:
        return await redis_now(client) > target

    await until(passed, f"Redis time {target}")


async def lease_expiries(client: aioredis.Redis, key: str) -> list[float]:
    """When each lease held under ``key`` runs out, as the scripts record it, in order."""
    leases = await client.zrange(f"{{{key}}}:leases", 0, -1, withscores=True)
    return sorted(score for _, score in cast(list[tuple[bytes, float]], leases))


async def lease_starts(client: aioredis.Redis, key: str, lease_seconds: float) -> list[float]:
    """The start each lease was granted for, in order (a lease runs one lease from its start).

    Valid until the first renewal, a third of a lease after the grant: tests that read it
    take leases far longer than themselves.
    """
    lease_us = round(lease_seconds * 1_000_000)
    return [expiry - lease_us for expiry in await lease_expiries(client, key)]


# -- the cap ------------------------------------------------------------------------------


async def test_the_cap_holds_across_limiters_of_separate_clients(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    limiters = [RedisLimiter(connect(), key=key, max_concurrency=3) for _ in range(4)]
    in_flight = peak = granted = 0

    async def work(limiter: RedisLimiter) -> None:
        nonlocal in_flight, peak, granted
        for _ in range(10):
            permit = await limiter.acquire()
            in_flight += 1
            granted += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.001)
            in_flight -= 1
            await limiter.release(permit, throttled=False)

    await within(20, asyncio.gather(*(work(limiter) for limiter in limiters for _ in range(5))))
    state = await limiters[0].read_state()
    assert granted == 200
    assert peak == 3
    assert state.peak_in_flight == 3
    assert state.in_flight == 0
    assert state.waiting == 0


async def test_expired_leases_are_reclaimed(
    redis_server: RedisServer, connect: Callable[[], aioredis.Redis], key: str
) -> None:
    frozen = RedisLimiter(connect(), key=key, max_concurrency=2, lease_seconds=0.3)
    survivor = RedisLimiter(connect(), key=key, max_concurrency=2, lease_seconds=0.3)
    leaked = [await frozen.acquire(), await frozen.acquire()]
    state = await survivor.read_state()
    assert (state.in_flight, state.level) == (2, 2)

    # The worker's event loop stops for two leases: nothing renews its leases, they run out.
    # (A renewal sent just before the stop ends one lease after it at the latest.)
    with sync_redis.Redis(host="127.0.0.1", port=redis_server.port) as blocking:
        stopped_at = _microseconds(blocking.time())
        while _microseconds(blocking.time()) <= stopped_at + 2 * 300_000:
            time.sleep(0.01)  # noqa: ASYNC251 - blocking the loop is the point
    permits = [await within(5, survivor.acquire()), await within(5, survivor.acquire())]
    assert (await survivor.read_state()).in_flight == 2

    # A late release of an expired lease frees nothing that is not its own.
    for permit in leaked:
        await frozen.release(permit, throttled=False)
    assert frozen.expired_leases == 2
    assert (await survivor.read_state()).in_flight == 2
    for permit in permits:
        await survivor.release(permit, throttled=False)
    assert (await survivor.read_state()).in_flight == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_holds_no_slot(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    limiter = RedisLimiter(connect(), key=key, max_concurrency=1)
    holder = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await queued(limiter, 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    state = await limiter.read_state()
    assert (state.in_flight, state.waiting) == (1, 0)
    await limiter.release(holder, throttled=False)
    await limiter.release(await within(5, limiter.acquire()), throttled=False)


async def test_a_cancellation_dropped_inside_redis_py_still_cancels_the_waiter(
    connect: Callable[[], aioredis.Redis], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RedisLimiter(connect(), key=key, max_concurrency=1)
    holder = await limiter.acquire()
    asked = asyncio.Event()

    async def deaf(keys: Sequence[str], args: Sequence[object]) -> list[object]:
        if asked.is_set():  # asked again: the cancellation was lost
            await asyncio.sleep(30)
        asked.set()
        # What asyncio.wait_for, which redis-py uses, may do on Python 3.11 when the cancel
        # comes as its write completes (python/cpython#86296): answer as if not cancelled.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        return [0, 0, 0, b"1", b"0", 1, 0, b"0"]  # not granted: one waiter ahead

    monkeypatch.setattr(limiter, "_acquire_script", deaf)
    waiter = asyncio.create_task(limiter.acquire())
    await within(10, asked.wait())
    waiter.cancel()
    await asyncio.wait([waiter], timeout=10)
    assert waiter.cancelled()
    monkeypatch.undo()
    state = await limiter.read_state()
    assert (state.in_flight, state.waiting) == (1, 0)
    await limiter.release(holder, throttled=False)


@contextlib.asynccontextmanager
async def behind_a_held_relay(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[HeldRelay, aioredis.Redis]]:
    """A relay in front of the session's Redis, and a client of Redis through it."""
    async with HeldRelay(redis_server.port) as relay:
        client = aioredis.Redis(host="127.0.0.1", port=relay.port)
        try:
            yield relay, client
        finally:
            await client.aclose()


async def test_a_release_cancelled_while_redis_is_slow_still_gives_the_slot_back(
    redis_server: RedisServer, connect: Callable[[], aioredis.Redis], key: str
) -> None:
    async with behind_a_held_relay(redis_server) as (relay, slow):
        limiter = RedisLimiter(slow, key=key, max_concurrency=2, lease_seconds=60, timeout=30)
        permit = await limiter.acquire()
        # The release needs a new connection, whose first words Redis is slow to hear.
        await slow.connection_pool.disconnect()
        relay.gate.close()
        releasing = asyncio.create_task(limiter.release(permit, throttled=False))
        await within(10, relay.gate.held.wait())
        releasing.cancel()
        relay.gate.open()
        with pytest.raises(asyncio.CancelledError):
            await within(10, releasing)
    # Given back to the fleet now, not when its lease of a minute runs out.
    observer = RedisLimiter(connect(), key=key, max_concurrency=2)
    assert (await observer.read_state()).in_flight == 0


async def test_close_while_a_request_gives_its_slot_back_to_a_slow_redis_gives_it_back(
    redis_server: RedisServer,
    connect: Callable[[], aioredis.Redis],
    key: str,
    paged_server: PagedServer,
    client_for: Callable[..., FlexClient],
) -> None:
    uo = paged_server.add_channel(1, 3)
    respond = hold_requests(paged_server)
    ends: list[Event] = []

    def hook(event: Event) -> None:
        if isinstance(event, ResponseReceived | RequestFailed):
            ends.append(event)

    async with behind_a_held_relay(redis_server) as (relay, slow):
        limiter = RedisLimiter(slow, key=key, max_concurrency=2, lease_seconds=60, timeout=30)
        client = client_for(paged_server, limiter=limiter, hooks=[hook])
        fetching = asyncio.create_task(client.fetch_page(KD, uo))
        await paged_server.wait_for_requests(1)
        # Redis turns slow while the request is out: the release needs a new connection,
        # whose first words it is slow to hear.
        await slow.connection_pool.disconnect()
        relay.gate.close()
        respond.set()
        await within(10, relay.gate.held.wait())
        closing = asyncio.create_task(client.close())
        await asyncio.sleep(0)  # close() has cancelled the request's task
        relay.gate.open()
        with pytest.raises(ClientClosedError):
            await within(10, fetching)
        await closing
    assert [type(event) for event in ends] == [ResponseReceived]
    observer = RedisLimiter(connect(), key=key, max_concurrency=2)
    assert (await observer.read_state()).in_flight == 0


# -- leases while they are held -----------------------------------------------------------


async def test_a_slot_is_kept_while_its_request_runs_longer_than_the_lease(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    lease = 1.5
    holder = RedisLimiter(connect(), key=key, max_concurrency=1, lease_seconds=lease)
    other = RedisLimiter(connect(), key=key, max_concurrency=1, lease_seconds=lease)
    clock = connect()
    permit = await holder.acquire()
    (first_expiry,) = await lease_expiries(clock, key)
    blocked = asyncio.create_task(other.acquire())
    await queued(other, 1)

    # Past the lease it was granted, and a renewal period more: it has been renewed.
    await until_redis_time(clock, first_expiry + lease * 1_000_000 / 3)
    state = await other.read_state()
    assert (state.in_flight, state.waiting) == (1, 1)
    assert not blocked.done()
    (renewed,) = await lease_expiries(clock, key)
    assert renewed > first_expiry

    await holder.release(permit, throttled=False)
    await other.release(await within(10, blocked), throttled=False)
    assert holder.expired_leases == 0


async def start_worker(job: dict[str, Any]) -> asyncio.subprocess.Process:
    """Run ``redis_fleet_worker.py`` on ``job`` in a process of its own, with pipes to its
    stdin, stdout and stderr."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        json.dumps(job),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def first_report(worker: asyncio.subprocess.Process) -> object:
    """The first JSON line the worker prints (``None`` if it ends without one)."""
    assert worker.stdout is not None
    return json.loads(await within(30, worker.stdout.readline()) or b"null")


async def test_a_killed_worker_frees_its_slots_within_one_lease(
    redis_server: RedisServer, connect: Callable[[], aioredis.Redis], key: str
) -> None:
    lease = 1.5
    lease_us = lease * 1_000_000
    job = {"redis_port": redis_server.port, "key": key, "cap": 2, "lease_seconds": lease, "hold": 2}
    worker = await start_worker(job)
    clock = connect()
    try:
        assert await first_report(worker) == {"held": 2}
        granted = await lease_expiries(clock, key)

        # While the worker lives, its slots outlive their first lease: it renews them.
        await until_redis_time(clock, max(granted) + lease_us / 3)
        assert (await RedisLimiter(clock, key=key, max_concurrency=2).read_state()).in_flight == 2
    finally:
        worker.kill()
        await worker.communicate()
    killed_at = await redis_now(clock)

    # Killed, it renews nothing more: each slot comes back at most a lease later.
    assert max(await lease_expiries(clock, key)) <= killed_at + lease_us
    survivor = RedisLimiter(connect(), key=key, max_concurrency=2)
    permits = [await within(15, survivor.acquire()), await within(15, survivor.acquire())]
    for permit in permits:
        await survivor.release(permit, throttled=False)


async def test_one_renewal_task_runs_while_permits_are_held_and_stops_with_the_last(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    limiter = RedisLimiter(connect(), key=key, max_concurrency=3)
    await limiter.read_state()  # the client's connection is open before we count tasks
    before = asyncio.all_tasks()
    permits = [await limiter.acquire() for _ in range(3)]
    (renewal,) = asyncio.all_tasks() - before
    for permit in permits[:2]:
        await limiter.release(permit, throttled=False)
        assert not renewal.done()
    await limiter.release(permits[2], throttled=False)
    assert renewal.done()
    assert asyncio.all_tasks() == before

    # The next permit starts a new one.
    permit = await limiter.acquire()
    assert len(asyncio.all_tasks() - before) == 1
    await limiter.release(permit, throttled=False)
    assert asyncio.all_tasks() == before


async def test_a_permit_dropped_without_a_release_stops_being_renewed(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    limiter = RedisLimiter(connect(), key=key, max_concurrency=1, lease_seconds=0.6)
    permit: object | None = await limiter.acquire()
    assert (await limiter.read_state()).in_flight == 1
    del permit
    gc.collect()

    async def freed() -> bool:
        return (await limiter.read_state()).in_flight == 0

    await until(freed, "the dropped permit's lease ran out")
    await limiter.release(await within(10, limiter.acquire()), throttled=False)


async def test_a_renewal_that_cannot_reach_redis_is_logged_and_the_release_still_returns(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with own_redis_server() as (server, client):
        limiter = RedisLimiter(client, key=key, max_concurrency=1, lease_seconds=0.9, timeout=0.3)
        permit = await limiter.acquire()
        with caplog.at_level(logging.WARNING, logger="flex_participants"):
            server.stop()

            async def renewal_failed() -> bool:
                return limiter.redis_failures >= 1

            await until(renewal_failed, "a renewal failed")
            assert "could not renew the slot leases" in caplog.text
            await within(10, limiter.release(permit, throttled=False))


async def test_an_unexpected_renewal_error_is_raised_by_the_next_release(
    connect: Callable[[], aioredis.Redis], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RedisLimiter(connect(), key=key, max_concurrency=1, lease_seconds=0.3)
    called = asyncio.Event()

    async def broken(**_: object) -> list[object]:
        called.set()
        raise RuntimeError("a bug in the renewal")

    monkeypatch.setattr(limiter, "_renew_script", broken)
    permit = await limiter.acquire()
    await within(10, called.wait())
    with pytest.raises(RuntimeError, match="a bug in the renewal"):
        await limiter.release(permit, throttled=False)
    # The slot was given back all the same, and the next permit renews again.
    assert (await limiter.read_state()).in_flight == 0
    monkeypatch.undo()
    await limiter.release(await limiter.acquire(), throttled=False)


# -- the adaptive level -------------------------------------------------------------------


async def test_a_429_lowers_the_shared_level_for_every_limiter_once_per_burst(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    seeing = RedisLimiter(connect(), key=key, max_concurrency=8)
    other = RedisLimiter(connect(), key=key, max_concurrency=8)
    burst = [await seeing.acquire() for _ in range(4)]

    await seeing.release(burst[0], throttled=True)
    await seeing.release(burst[1], throttled=True)  # same burst: no second halving
    state = await other.read_state()
    assert (state.level, state.generation, state.throttled) == (4, 1, 2)
    assert other.level == 4

    # The other limiter now gets only the free slots of the lowered level.
    taken = [await other.acquire(), await other.acquire()]  # 2 + 2 still out = 4
    blocked = asyncio.create_task(other.acquire())
    await queued(other, 1)
    assert not blocked.done()

    # A 429 to a request granted after the decrease starts a new burst.
    await other.release(taken[0], throttled=True)
    assert (await seeing.read_state()).level == 2
    for permit in (burst[2], burst[3], taken[1]):
        await seeing.release(permit, throttled=False)
    await other.release(await within(5, blocked), throttled=False)


async def test_successes_raise_the_level_slowly_and_only_while_the_window_is_full(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    limiter = RedisLimiter(connect(), key=key, max_concurrency=3)
    for _ in range(2):  # two bursts: 3 -> 1.5 -> 1
        await limiter.release(await limiter.acquire(), throttled=True)
    assert (await limiter.read_state()).level == 1

    # One request at a time fills a window of 1, then no more: the level stops at 2.
    levels = []
    for _ in range(20):
        await limiter.release(await limiter.acquire(), throttled=False)
        levels.append((await limiter.read_state()).level)
    assert levels[:3] == [1, 1, 2]
    assert set(levels[3:]) == {2}

    # Two at a time fill it: it grows, never above max_concurrency.
    for _ in range(30):
        pair = [await limiter.acquire(), await limiter.acquire()]
        for permit in pair:
            await limiter.release(permit, throttled=False)
    assert (await limiter.read_state()).level == 3


# -- fairness -----------------------------------------------------------------------------


async def test_waiters_are_served_in_arrival_order_across_limiters(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    limiters = [RedisLimiter(connect(), key=key, max_concurrency=1) for _ in range(3)]
    holder = await limiters[0].acquire()
    served: list[int] = []

    async def wait_then_release(n: int) -> None:
        limiter = limiters[n % 3]
        permit = await limiter.acquire()
        served.append(n)
        await limiter.release(permit, throttled=False)

    tasks = []
    for n in range(9):
        tasks.append(asyncio.create_task(wait_then_release(n)))
        await queued(limiters[0], n + 1)
    await limiters[0].release(holder, throttled=False)
    await within(10, asyncio.gather(*tasks))
    assert served == list(range(9))


async def test_a_lone_waiter_is_not_starved_by_a_busy_limiter(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    busy = RedisLimiter(connect(), key=key, max_concurrency=2)
    lone = RedisLimiter(connect(), key=key, max_concurrency=2)
    busy_grants = 0
    busy_for_a_while = asyncio.Event()
    stop = asyncio.Event()

    async def hog() -> None:
        nonlocal busy_grants
        while not stop.is_set():
            permit = await busy.acquire()
            busy_grants += 1
            if busy_grants == 50:
                busy_for_a_while.set()
            await busy.release(permit, throttled=False)

    overtaken: list[int] = []
    await lone.read_state()  # its connection is open before it queues
    async with asyncio.TaskGroup() as group:
        hogs = [group.create_task(hog()) for _ in range(8)]
        await within(10, busy_for_a_while.wait())
        for _ in range(5):
            before = busy_grants
            permit = await within(10, lone.acquire())
            overtaken.append(busy_grants - before)
            await lone.release(permit, throttled=False)
        stop.set()
    assert all(hog.done() for hog in hogs)
    # At most the 8 busy waiters queued ahead, and those racing its first request to Redis.
    assert max(overtaken) <= 24, overtaken


# -- the bucket ---------------------------------------------------------------------------

# Rates whose interval is a whole number of microseconds, so that every start the scripts
# compute is a whole number too, and the bounds below hold exactly.
RATES = [1250, 5000, 20000]


def most_starts_over_the_bound(starts: Sequence[float], rate: float) -> float:
    """The largest ``count - rate * t`` over every window ``[s_i, s_j]`` of the starts.

    A bucket of ``burst`` tokens refilled at ``rate`` allows at most ``burst + rate * t``
    starts in any window of length ``t``: this is never above ``burst``. (1 microsecond of
    slack for the doubles the scripts compute in.)
    """
    ordered = sorted(starts)
    return max(
        j - i + 1 - rate * (ordered[j] - ordered[i] + 1) / 1_000_000
        for i in range(len(ordered))
        for j in range(i, len(ordered))
    )


async def reserve(limiter: RedisLimiter) -> asyncio.Task[object]:
    """Start an acquire, and return its task once Redis has granted it a slot and a start."""
    held = (await limiter.read_state()).in_flight
    task = asyncio.create_task(limiter.acquire())

    async def reserved() -> bool:
        return (await limiter.read_state()).in_flight == held + 1

    await until(reserved, "a start was reserved")
    return task


async def cancel(task: asyncio.Task[object]) -> None:
    """Cancel a waiter and wait until it has ended."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_full_bucket_lets_a_burst_start_at_once_and_the_next_waits(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    lease = 600.0
    # One token every 100 s: none comes back during the test.
    limiter = RedisLimiter(
        connect(), key=key, max_concurrency=10, rate_limit=0.01, burst=3, lease_seconds=lease
    )
    clock = connect()
    began = await redis_now(clock)
    permits = [await within(10, limiter.acquire()) for _ in range(3)]
    taken = await redis_now(clock)
    starts = await lease_starts(clock, key, lease)
    assert len(starts) == 3
    assert all(began <= start <= taken for start in starts)  # none waited for a token

    fourth = asyncio.create_task(limiter.acquire())
    await queued(limiter, 1)
    state = await limiter.read_state()
    assert (state.in_flight, state.waiting) == (3, 1)
    assert not fourth.done()
    await cancel(fourth)
    for permit in permits:
        await limiter.release(permit, throttled=False)
    # Giving slots back gives no tokens back: the bucket refills with time only.
    fifth = asyncio.create_task(limiter.acquire())
    await queued(limiter, 1)
    assert (await limiter.read_state()).in_flight == 0
    await cancel(fifth)


@pytest.mark.parametrize("burst", [1, 8])
@pytest.mark.parametrize("rate", RATES)
async def test_no_window_holds_more_starts_than_the_burst_plus_the_rate_allow(
    connect: Callable[[], aioredis.Redis], key: str, rate: int, burst: int
) -> None:
    lease = 600.0  # so that no renewal moves the recorded starts during the test
    limiters = [
        RedisLimiter(
            connect(),
            key=key,
            max_concurrency=300,
            rate_limit=rate,
            burst=burst,
            lease_seconds=lease,
        )
        for _ in range(3)
    ]
    clock = connect()
    permits: list[tuple[RedisLimiter, object]] = []

    async def take(limiter: RedisLimiter) -> None:
        for _ in range(10):
            permits.append((limiter, await limiter.acquire()))

    began = await redis_now(clock)
    await within(60, asyncio.gather(*(take(limiter) for limiter in limiters for _ in range(5))))
    ended = await redis_now(clock)
    starts = await lease_starts(clock, key, lease)

    assert len(starts) == 150
    assert began <= min(starts)
    assert max(starts) <= ended + 1000  # each acquire returned at its start (1 ms of drift)
    assert most_starts_over_the_bound(starts, rate) <= burst
    for limiter, permit in permits:
        await limiter.release(permit, throttled=False)


@pytest.mark.parametrize("rate", RATES)
async def test_a_backlog_gets_starts_exactly_one_interval_apart(
    connect: Callable[[], aioredis.Redis], key: str, rate: int
) -> None:
    lease = 600.0
    burst = 4
    limiter = RedisLimiter(
        connect(),
        key=key,
        max_concurrency=100,
        rate_limit=rate,
        burst=burst,
        lease_seconds=lease,
        poll_interval=5.0,  # starts up to 5 s ahead are reserved at once
    )
    clock = connect()
    interval = 1_000_000 // rate
    # The fleet's bucket is booked up to a second from now, as under a steady backlog.
    tat = await redis_now(clock) + 1_000_000
    async with clock.pipeline() as pipe:  # typed alike by redis-py 5 and 8
        pipe.hset(f"{{{key}}}:state", "tat", str(tat))
        await pipe.execute()
    first = tat - (burst - 1) * interval
    returned: list[int] = []

    async def take() -> object:
        permit = await limiter.acquire()
        returned.append(await redis_now(clock))
        return permit

    permits = await within(60, asyncio.gather(*(take() for _ in range(40))))
    starts = await lease_starts(clock, key, lease)

    assert starts == [first + n * interval for n in range(40)]
    # Each acquire returned at its start, not before (1 ms for the clocks' drift).
    assert all(at >= start - 1000 for at, start in zip(sorted(returned), starts, strict=True))
    for permit in permits:
        await limiter.release(permit, throttled=False)


def one_start_every_5_s(connect: Callable[[], aioredis.Redis], key: str) -> RedisLimiter:
    """A bucket of one token every 5 s, reserved up to 30 s ahead: the waiters of the tests
    below all hold a start, far enough ahead that none comes before the test cancels them."""
    return RedisLimiter(
        connect(),
        key=key,
        max_concurrency=10,
        rate_limit=0.2,
        burst=1,
        lease_seconds=600.0,
        poll_interval=30.0,
    )


async def schedule(client: aioredis.Redis, key: str) -> list[float]:
    """The starts held under ``key``, in intervals of 5 s after the first."""
    starts = await lease_starts(client, key, 600.0)
    return [round((start - starts[0]) / 5_000_000, 6) for start in starts]


async def test_a_waiter_cancelled_before_its_start_gives_the_start_back(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    limiter = one_start_every_5_s(connect, key)
    clock = connect()
    first = await limiter.acquire()
    waiter = await reserve(limiter)
    assert await schedule(clock, key) == [0, 1]

    await cancel(waiter)
    assert await schedule(clock, key) == [0]
    state = await limiter.read_state()
    assert (state.in_flight, state.waiting) == (1, 0)

    # So the next waiter gets that start, not the one after it: nothing was pushed out.
    after = await reserve(limiter)
    assert await schedule(clock, key) == [0, 1]
    await cancel(after)
    await limiter.release(first, throttled=False)
    assert limiter.in_flight == 0
    assert (await limiter.read_state()).in_flight == 0


async def test_a_start_followed_by_a_later_grant_is_not_given_back(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    limiter = one_start_every_5_s(connect, key)
    clock = connect()
    first = await limiter.acquire()
    a, b = [await reserve(limiter) for _ in range(2)]
    assert await schedule(clock, key) == [0, 1, 2]

    # b's start stays where it is, so a's cannot go to anyone else: the bucket allows one
    # start per interval, and a's token was spent when b's start was placed after it.
    await cancel(a)
    c = await reserve(limiter)
    assert await schedule(clock, key) == [0, 2, 3]

    # c was the last: its start comes back.
    await cancel(c)
    d = await reserve(limiter)
    assert await schedule(clock, key) == [0, 2, 3]
    for task in (b, d):
        await cancel(task)
    await limiter.release(first, throttled=False)
    assert (await limiter.read_state()).in_flight == 0


# -- the shared rate ----------------------------------------------------------------------


@pytest.fixture
def recovery(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """``recovery(seconds)`` sets how long the shared rate takes to grow back after a 429."""

    def set_recovery(seconds: float) -> None:
        monkeypatch.setattr(_limiter, "_RATE_RECOVERY_SECONDS", seconds)

    return set_recovery


RATE_429 = Throttle(code=20429)
CONCURRENCY_429 = Throttle(code=45780)


async def test_a_429_for_the_rate_lowers_the_shared_rate_once_per_burst(
    connect: Callable[[], aioredis.Redis], key: str, recovery: Callable[[float], None]
) -> None:
    recovery(1e6)  # nothing grows back during the test
    seeing = RedisLimiter(connect(), key=key, max_concurrency=8, rate_limit=100, burst=5)
    other = RedisLimiter(connect(), key=key, max_concurrency=8, rate_limit=100, burst=5)
    assert other.rate == 100
    burst = [await seeing.acquire() for _ in range(3)]

    await seeing.release(burst[0], throttled=True, throttle=RATE_429)
    # The same burst, with no code or no Throttle at all: no second decrease.
    await seeing.release(burst[1], throttled=True, throttle=Throttle())
    await seeing.release(burst[2], throttled=True)
    state = await other.read_state()
    assert state.rate == pytest.approx(70, rel=1e-6)
    assert other.rate == state.rate
    assert (state.level, state.generation, state.throttled) == (8, 0, 3)

    # A 429 to a request granted after the decrease starts a new burst.
    later = await within(10, other.acquire())
    await other.release(later, throttled=True, throttle=RATE_429)
    assert (await seeing.read_state()).rate == pytest.approx(49, rel=1e-6)
    assert seeing.rate == pytest.approx(49, rel=1e-6)


async def test_a_429_for_the_rate_empties_the_bucket(
    connect: Callable[[], aioredis.Redis], key: str, recovery: Callable[[float], None]
) -> None:
    recovery(1e6)
    lease = 600.0
    limiter = RedisLimiter(
        connect(), key=key, max_concurrency=8, rate_limit=100, burst=5, lease_seconds=lease
    )
    clock = connect()
    permit = await limiter.acquire()  # 4 tokens left
    before = await redis_now(clock)
    await limiter.release(permit, throttled=True, throttle=RATE_429)
    after = await within(10, limiter.acquire())
    (start,) = await lease_starts(clock, key, lease)

    # Not at once, as the tokens left would have allowed: one interval of the lowered rate on.
    assert start >= before + 1_000_000 / 70 - 1
    await limiter.release(after, throttled=False)


async def test_the_rate_never_falls_below_a_twentieth_of_rate_limit(
    connect: Callable[[], aioredis.Redis], key: str, recovery: Callable[[float], None]
) -> None:
    recovery(1e6)
    limiter = RedisLimiter(connect(), key=key, max_concurrency=8, rate_limit=1000, burst=1)
    for _ in range(12):  # 0.7 ** 12 would be 1.4%
        await limiter.release(await within(10, limiter.acquire()), throttled=True)
    assert (await limiter.read_state()).rate == pytest.approx(50, rel=1e-6)


async def test_a_429_for_requests_in_flight_halves_the_level_and_keeps_the_rate(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    limiter = RedisLimiter(connect(), key=key, max_concurrency=8, rate_limit=100)
    permits = [await limiter.acquire() for _ in range(2)]
    for permit in permits:  # one burst: one decrease
        await limiter.release(permit, throttled=True, throttle=CONCURRENCY_429)
    state = await limiter.read_state()
    assert (state.level, state.generation, state.rate, state.throttled) == (4, 1, 100, 2)


async def test_without_a_rate_limit_any_429_halves_the_level(
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    limiter = RedisLimiter(connect(), key=key, max_concurrency=8)
    await limiter.release(await limiter.acquire(), throttled=True, throttle=RATE_429)
    state = await limiter.read_state()
    assert (state.level, state.generation, state.rate) == (4, 1, None)
    assert limiter.rate is None


async def test_the_rate_grows_back_linearly_after_a_429(
    connect: Callable[[], aioredis.Redis], key: str, recovery: Callable[[float], None]
) -> None:
    recovery(60.0)
    limiter = RedisLimiter(connect(), key=key, max_concurrency=8, rate_limit=100)
    clock = connect()
    permit = await limiter.acquire()
    before = await redis_now(clock)
    await limiter.release(permit, throttled=True, throttle=RATE_429)
    cut_by = await redis_now(clock)
    first = (await limiter.read_state()).rate
    await until_redis_time(clock, cut_by + 50_000)
    second = (await limiter.read_state()).rate
    read_by = await redis_now(clock)

    assert first is not None
    assert second is not None
    # From 70% up to all of it in 60 s: 0.5 more per second.
    assert 70 <= first < second <= 70 + 30 * (read_by - before) / 60_000_000
    assert second >= 70 + 30 * 50_000 / 60_000_000


async def test_the_rate_is_back_at_rate_limit_after_the_recovery_and_never_above(
    connect: Callable[[], aioredis.Redis], key: str, recovery: Callable[[float], None]
) -> None:
    recovery(0.2)
    limiter = RedisLimiter(connect(), key=key, max_concurrency=8, rate_limit=100)
    clock = connect()
    await limiter.release(await limiter.acquire(), throttled=True, throttle=RATE_429)
    cut_by = await redis_now(clock)
    await until_redis_time(clock, cut_by + 200_000)
    assert (await limiter.read_state()).rate == 100
    await until_redis_time(clock, cut_by + 400_000)
    assert (await limiter.read_state()).rate == 100
    assert limiter.rate == 100


# -- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("max_concurrency", True, "max_concurrency must be an integer >= 1, got True"),
        ("max_concurrency", 0, "max_concurrency must be an integer >= 1, got 0"),
        ("max_concurrency", 2.0, "max_concurrency must be an integer >= 1, got 2.0"),
        ("local_max_concurrency", True, "local_max_concurrency must be an integer >= 1, got True"),
        (
            "rate_limit",
            math.nan,
            "rate_limit must be a finite number of requests per second > 0, got nan",
        ),
        (
            "rate_limit",
            math.inf,
            "rate_limit must be a finite number of requests per second > 0, got inf",
        ),
        ("rate_limit", 0, "rate_limit must be a finite number of requests per second > 0, got 0"),
        (
            "rate_limit",
            True,
            "rate_limit must be a finite number of requests per second > 0, got True",
        ),
        (
            "lease_seconds",
            math.nan,
            "lease_seconds must be a finite number of seconds > 0, got nan",
        ),
        ("lease_seconds", -1, "lease_seconds must be a finite number of seconds > 0, got -1"),
        ("lease_seconds", True, "lease_seconds must be a finite number of seconds > 0, got True"),
        ("timeout", math.inf, "timeout must be a finite number of seconds > 0, got inf"),
        ("timeout", 0, "timeout must be a finite number of seconds > 0, got 0"),
        ("poll_interval", False, "poll_interval must be a finite number of seconds > 0, got False"),
    ],
)
def test_numeric_arguments_follow_the_package_rule(name: str, value: object, message: str) -> None:
    options: dict[str, Any] = {"max_concurrency": 2, name: value}
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(message)}$"):
        RedisLimiter(aioredis.Redis(), **options)


def test_whole_numbers_are_quantities_too() -> None:
    limiter = RedisLimiter(
        aioredis.Redis(), max_concurrency=2, rate_limit=1500, lease_seconds=10, timeout=1
    )
    assert limiter.max_concurrency == 2


@pytest.mark.parametrize(("rate", "burst"), [(20, 4), (100, 4), (9.9, 1), (4, 1), (0.5, 1)])
def test_burst_defaults_to_a_fifth_of_a_second_of_the_rate_from_one_to_four(
    rate: float, burst: int
) -> None:
    limiter = RedisLimiter(aioredis.Redis(), max_concurrency=2, rate_limit=rate)
    assert (limiter.rate, limiter.burst) == (rate, burst)


def test_a_burst_given_is_kept() -> None:
    limiter = RedisLimiter(aioredis.Redis(), max_concurrency=2, rate_limit=20, burst=7)
    assert limiter.burst == 7


@pytest.mark.parametrize("burst", [0, -1, True, 2.0, "4"])
def test_burst_must_be_an_integer_of_at_least_one(burst: object) -> None:
    options: dict[str, Any] = {"max_concurrency": 2, "rate_limit": 20, "burst": burst}
    message = f"burst must be an integer >= 1, got {burst!r}"
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(message)}$"):
        RedisLimiter(aioredis.Redis(), **options)


def test_a_burst_needs_a_rate_limit() -> None:
    with pytest.raises(InvalidArgumentError, match="give rate_limit too"):
        RedisLimiter(aioredis.Redis(), max_concurrency=2, burst=4)


def test_without_a_rate_limit_there_is_no_rate_and_no_burst() -> None:
    limiter = RedisLimiter(aioredis.Redis(), max_concurrency=2)
    assert (limiter.rate, limiter.burst) == (None, None)


# -- when Redis fails ---------------------------------------------------------------------


async def test_redis_going_away_makes_acquire_raise_a_transport_error_naming_redis(
    key: str,
) -> None:
    async with own_redis_server() as (server, client):
        limiter = RedisLimiter(client, key=key, max_concurrency=1, timeout=1.0)
        holder = await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await queued(limiter, 1)
        server.stop()

        # The waiter, mid-wait, and a new acquire both fail; neither hangs.
        with pytest.raises(TransportError, match=f"Redis at 127.0.0.1:{server.port}"):
            await within(10, waiter)
        with pytest.raises(TransportError, match="unavailable"):
            await within(10, limiter.acquire())
        # A release cannot reach Redis either; the lease will run out, and it does not raise.
        await within(10, limiter.release(holder, throttled=False))
        assert limiter.redis_failures >= 3


async def test_redis_going_away_falls_back_to_a_local_limit_when_asked(key: str) -> None:
    async with own_redis_server() as (server, client):
        limiter = RedisLimiter(
            client,
            key=key,
            max_concurrency=4,
            on_redis_error="local",
            local_max_concurrency=2,
            timeout=1.0,
        )
        await limiter.release(await limiter.acquire(), throttled=False)
        assert not limiter.using_local
        server.stop()

        first = await within(10, limiter.acquire())
        assert limiter.using_local
        second = await within(10, limiter.acquire())
        third = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.05)
        assert not third.done()  # the local limit of 2 holds
        await limiter.release(first, throttled=False)
        await limiter.release(await within(10, third), throttled=False)
        await limiter.release(second, throttled=False)
        assert limiter.in_flight == 0


async def test_the_local_fallback_keeps_the_rate_limit_and_the_burst(key: str) -> None:
    async with own_redis_server() as (server, client):
        # One token every 100 s: none comes back during the test.
        limiter = RedisLimiter(
            client,
            key=key,
            max_concurrency=4,
            rate_limit=0.01,
            burst=2,
            on_redis_error="local",
            timeout=1.0,
        )
        server.stop()

        permits = [await within(10, limiter.acquire()) for _ in range(2)]
        assert limiter.using_local
        third = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.05)
        assert not third.done()  # the local bucket of 2 is empty, and slots are free
        await cancel(third)
        for permit in permits:
            await limiter.release(permit, throttled=False)
        assert limiter.in_flight == 0


async def test_a_redis_that_never_answers_times_out(key: str) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        limiter = RedisLimiter(client, key=key, max_concurrency=2, timeout=0.3)
        with pytest.raises(TransportError, match=r"no answer within 0\.3 s"):
            await within(10, limiter.acquire())
    finally:
        await client.aclose()
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_a_batch_fails_each_channel_clearly_when_redis_is_unreachable(key: str) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=free_port())  # nothing listens there
    try:
        limiter = RedisLimiter(client, key=key, max_concurrency=2, timeout=1.0)
        async with FlexEmulator(seed=3, channels=6) as emulator:
            async with FlexClient(
                **emulator.client_kwargs(),
                limiter=limiter,
                retry=RetryPolicy(max_attempts=2, backoff_base=0.01),
            ) as flex:
                results = [
                    result async for result in flex.participants_for_channels(emulator.channels)
                ]
            assert emulator.stats.requests == 0
        assert len(results) == 6
        for result in results:
            assert isinstance(result.error, TransportError)
            assert "Redis at 127.0.0.1" in str(result.error)
    finally:
        await client.aclose()


# -- a fleet of processes -----------------------------------------------------------------


async def test_the_emulator_throttles_clients_that_do_not_share_a_limit() -> None:
    # The control for the fleet test below: four clients with limits of their own go over.
    async with FlexEmulator(seed=11, channels=16, latency=0.02, max_in_flight=3) as emulator:
        clients = [
            FlexClient(
                **emulator.client_kwargs(),
                max_concurrency=3,
                retry=RetryPolicy(max_attempts=10, backoff_base=0.01),
            )
            for _ in range(4)
        ]
        try:
            shares = [emulator.channels[n::4] for n in range(4)]
            batches = await asyncio.gather(
                *(_drain(client, share) for client, share in zip(clients, shares, strict=True))
            )
        finally:
            for client in clients:
                await client.close()
        assert emulator.stats.throttled > 0
        assert sum(len(batch) for batch in batches) == 16


async def _drain(client: FlexClient, channels: list[tuple[str, str]]) -> list[object]:
    return [result async for result in client.participants_for_channels(channels)]


async def test_four_worker_processes_share_one_cap_and_get_no_429(
    redis_server: RedisServer, key: str
) -> None:
    cap = 3
    async with FlexEmulator(seed=5, channels=48, latency=0.01, max_in_flight=cap) as emulator:
        channels = emulator.channels
        jobs = [
            {
                "redis_port": redis_server.port,
                "key": key,
                "cap": cap,
                "window": 4,
                "client": emulator.client_kwargs(),
                "channels": channels[n::4],
            }
            for n in range(4)
        ]
        workers = [await start_worker(job) for job in jobs]
        outputs = await within(45, asyncio.gather(*(worker.communicate() for worker in workers)))
        reports = []
        for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, stderr.decode(errors="replace")
            reports.append(json.loads(stdout))
        stats = emulator.stats

        assert stats.throttled == 0
        assert 1 < stats.peak_in_flight <= cap
        assert [report["errors"] for report in reports] == [[], [], [], []]
        counts: dict[str, int] = {}
        for report in reports:
            counts.update(report["counts"])
        assert counts == {uo: len(emulator.participants_of(kd, uo)) for kd, uo in channels}


async def test_four_worker_processes_share_one_bucket(
    redis_server: RedisServer, connect: Callable[[], aioredis.Redis], key: str
) -> None:
    rate, burst, lease, each = 200, 5, 600.0, 25
    job = {
        "redis_port": redis_server.port,
        "key": key,
        "cap": 4 * each,
        "rate_limit": rate,
        "burst": burst,
        "lease_seconds": lease,  # so that no renewal moves the recorded starts
        "take": each,
    }
    workers = [await start_worker(job) for _ in range(4)]
    clock = connect()
    try:
        for worker in workers:
            assert await first_report(worker) == {"took": each}
        starts = await lease_starts(clock, key, lease)
    finally:
        for worker in workers:
            if worker.returncode is None:
                try:
                    await within(30, worker.communicate(b"\n"))
                except TimeoutError:
                    worker.kill()
                    await worker.communicate()

    assert len(starts) == 4 * each
    assert most_starts_over_the_bound(starts, rate) <= burst
    assert [worker.returncode for worker in workers] == [0, 0, 0, 0]
    assert (await RedisLimiter(clock, key=key, max_concurrency=1).read_state()).in_flight == 0


# -- where it is imported from ------------------------------------------------------------


def test_its_names_are_listed_by_flex_participants_redis_alone() -> None:
    # So that flex_participants.__all__ does not change with what is installed.
    assert set(flex_participants.redis.__all__) == {"RedisLimiter", "RedisLimitState"}
    assert not set(flex_participants.redis.__all__) & set(flex_participants.__all__)


def test_importing_it_without_redis_names_the_extra() -> None:
    with uninstalled("redis", "flex_participants.redis"):
        with pytest.raises(ImportError, match=r"pip install 'flex-participants\[redis\]'"):
            importlib.import_module("flex_participants.redis")
