"""A fleet of arq workers that share one request budget for the Twilio account.

The worker of worker_arq.py, with its job, count_participants, made one of a fleet: its
client takes its slots from a limiter kept in Redis. Start as many workers as you like, on as
many machines, all with the same REDIS_URL:

    arq arq_fleet.WorkerSettings

and queue channels for them:

    python arq_fleet.py KD... UO... [KD... UO... ...]

However many workers run, together they start no more than FLEET_RATE_LIMIT requests a
second (Twilio documents 20 per account) and never have more than FLEET_MAX_CONCURRENCY in
flight, and a 429 seen by one slows all of them down.
"""

import asyncio
import os
import sys
from typing import Any

import worker_arq  # the single worker, next to this file
from arq import create_pool
from redis.asyncio import Redis

from flex_participants import FlexClient
from flex_participants.redis import RedisLimiter

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
# The budget of the whole fleet, not of one worker.
FLEET_MAX_CONCURRENCY = int(os.environ.get("FLEET_MAX_CONCURRENCY", "20"))
FLEET_RATE_LIMIT = float(os.environ.get("FLEET_RATE_LIMIT", "20"))


async def startup(ctx: dict[str, Any]) -> None:
    # This worker's own connection for the limiter, made in the worker's event loop.
    ctx["limiter_redis"] = redis = Redis.from_url(REDIS_URL, socket_timeout=5)
    limiter = RedisLimiter(
        redis,
        key="flex_participants:my-account",  # one key per Twilio account
        max_concurrency=FLEET_MAX_CONCURRENCY,
        rate_limit=FLEET_RATE_LIMIT,  # one token bucket for the fleet's requests a second
        # Held leases are renewed every lease_seconds / 3; a killed worker's slots come back
        # within one lease. Keep it at least 3 x the limiter's Redis timeout.
        lease_seconds=15,
        on_redis_error="raise",  # or "local", with local_max_concurrency=...
    )
    # max_concurrency here sizes this worker's connection pool; the limiter caps the fleet.
    ctx["flex_client"] = FlexClient(max_concurrency=10, limiter=limiter)


async def shutdown(ctx: dict[str, Any]) -> None:
    # The client first: it may still give slots back to Redis while it closes.
    await worker_arq.shutdown(ctx)
    await ctx["limiter_redis"].aclose()


class WorkerSettings:
    # arq reads a settings class's own attributes, not those it inherits: the single
    # worker's job, max_jobs and queue are named again here, with this startup and shutdown.
    # The limiter bounds the requests of the whole fleet; max_jobs, the jobs run at once by
    # this worker. The queue is the Redis at REDIS_URL, here the limiter's Redis too.
    functions = worker_arq.WorkerSettings.functions
    max_jobs = worker_arq.WorkerSettings.max_jobs
    redis_settings = worker_arq.WorkerSettings.redis_settings
    on_startup = startup
    on_shutdown = shutdown


async def enqueue(pairs: list[tuple[str, str]]) -> None:
    """Queue one job per channel, on the workers' queue."""
    queue = await create_pool(WorkerSettings.redis_settings)
    try:
        for interaction_sid, channel_sid in pairs:
            await queue.enqueue_job("count_participants", interaction_sid, channel_sid)
    finally:
        await queue.aclose()


if __name__ == "__main__":
    sids = sys.argv[1:]
    asyncio.run(enqueue(list(zip(sids[::2], sids[1::2], strict=True))))
