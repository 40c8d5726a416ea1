"""A fleet of arq workers that share one request budget for the Twilio account.

Start as many workers as you like, on as many machines, all with the same REDIS_URL:

    arq arq_fleet.WorkerSettings

and queue channels for them:

    python arq_fleet.py KD... UO... [KD... UO... ...]

However many workers run, together they never have more than FLEET_MAX_CONCURRENCY requests
in flight, and a 429 seen by one slows all of them down.
"""

import asyncio
import os
import sys
from typing import Any

from redis.asyncio import Redis

from flex_participants import FlexClient, NotFoundError, RedisLimiter

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
# The budget of the whole fleet, not of one worker.
FLEET_MAX_CONCURRENCY = int(os.environ.get("FLEET_MAX_CONCURRENCY", "20"))


async def startup(ctx: dict[str, Any]) -> None:
    # This worker's own connection for the limiter, made in the worker's event loop.
    ctx["limiter_redis"] = redis = Redis.from_url(REDIS_URL, socket_timeout=5)
    limiter = RedisLimiter(
        redis,
        key="flex_participants:my-account",  # one key per Twilio account
        max_concurrency=FLEET_MAX_CONCURRENCY,
        # Held leases are renewed every lease_seconds / 3; a killed worker's slots come back
        # within one lease. Keep it at least 3 x the limiter's Redis timeout.
        lease_seconds=15,
        on_redis_error="raise",  # or "local", with local_max_concurrency=...
    )
    # max_concurrency here sizes this worker's connection pool; the limiter caps the fleet.
    ctx["flex_client"] = FlexClient(max_concurrency=10, limiter=limiter)


async def shutdown(ctx: dict[str, Any]) -> None:
    # The client first: it may still give slots back to Redis while it closes.
    await ctx["flex_client"].close()
    await ctx["limiter_redis"].aclose()


async def fetch_channel(
    ctx: dict[str, Any], interaction_sid: str, channel_sid: str
) -> list[dict[str, Any]] | None:
    """The job: every participant of one channel, as dicts; ``None`` if the channel is gone."""
    client: FlexClient = ctx["flex_client"]
    try:
        async with client.participants(interaction_sid, channel_sid) as stream:
            return [{"sid": p.sid, "type": str(p.type)} async for p in stream]
    except NotFoundError:
        return None  # not worth a retry; other errors fail the job and arq may retry it


class WorkerSettings:
    functions = (fetch_channel,)
    on_startup = startup
    on_shutdown = shutdown
    # Jobs run at once by this worker; the limiter bounds the requests of the whole fleet.
    max_jobs = 20
    # arq's queue is at localhost:6379 unless redis_settings says otherwise, for example
    # RedisSettings.from_dsn(REDIS_URL) from arq.connections; it may be the limiter's Redis.


async def enqueue(pairs: list[tuple[str, str]]) -> None:
    """Queue one job per channel (the jobs above never import arq; this does)."""
    from arq import create_pool

    queue = await create_pool()
    try:
        for interaction_sid, channel_sid in pairs:
            await queue.enqueue_job("fetch_channel", interaction_sid, channel_sid)
    finally:
        await queue.aclose()


if __name__ == "__main__":
    sids = sys.argv[1:]
    asyncio.run(enqueue(list(zip(sids[::2], sids[1::2], strict=True))))
