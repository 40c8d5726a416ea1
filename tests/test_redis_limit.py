"""RedisLimiter against a real redis-server: one budget shared by many limiters and processes.

Several limiters, each with its own Redis client, stand for several processes; the fleet test
runs real worker processes against one emulator. The server is started once per session
(``redis-server`` from PATH or /usr/bin, by the ``redis_server`` fixture of conftest.py);
without one, these tests are skipped.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import pytest_asyncio

pytest.importorskip("redis", reason="the redis extra is not installed: pip install -e '.[redis]'")

import redis.asyncio as aioredis

from flex_participants import (
    FlexClient,
    RedisLimiter,
    RetryPolicy,
    TransportError,
)
from flex_participants.emulator import FlexEmulator

from .conftest import RedisServer, free_port, redis_server_or_skip

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
    connect: Callable[[], aioredis.Redis], key: str
) -> None:
    crashed = RedisLimiter(connect(), key=key, max_concurrency=2, lease_seconds=0.3)
    survivor = RedisLimiter(connect(), key=key, max_concurrency=2, lease_seconds=0.3)
    leaked = [await crashed.acquire(), await crashed.acquire()]
    state = await survivor.read_state()
    assert (state.in_flight, state.level) == (2, 2)

    # The crashed worker never gives its slots back; their leases run out.
    permits = [await within(5, survivor.acquire()), await within(5, survivor.acquire())]
    assert (await survivor.read_state()).in_flight == 2

    # A late release of an expired lease frees nothing that is not its own.
    for permit in leaked:
        await crashed.release(permit, throttled=False)
    assert crashed.expired_leases == 2
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


# -- when Redis fails ---------------------------------------------------------------------


async def test_redis_going_away_makes_acquire_raise_a_transport_error_naming_redis(
    key: str,
) -> None:
    with redis_server_or_skip() as server:
        client = server.client()
        try:
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
        finally:
            await client.aclose()


async def test_redis_going_away_falls_back_to_a_local_limit_when_asked(key: str) -> None:
    with redis_server_or_skip() as server:
        client = server.client()
        try:
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
        finally:
            await client.aclose()


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
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKER),
                json.dumps(job),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for job in jobs
        ]
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
