"""Fetch channels under one request budget shared, through Redis, by every process.

    python shared_budget.py KD... UO... [KD... UO... ...]

Run it in as many processes as you like, on as many machines, with the same REDIS_URL:
together they spend Twilio's documented budget of 20 requests a second, and no more, with
never more than 20 requests in flight.
"""

import asyncio
import os
import sys

from redis.asyncio import Redis

from flex_participants import FlexClient
from flex_participants.redis import RedisLimiter

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")


async def main(channels: list[tuple[str, str]]) -> None:
    # Made here, in the event loop that uses it, not at import time.
    redis = Redis.from_url(REDIS_URL)
    try:
        # One key per Twilio account: its requests in flight and its token bucket of 20
        # starts a second are shared by every process that uses it.
        limiter = RedisLimiter(
            redis, key="flex_participants:my-account", max_concurrency=20, rate_limit=20
        )
        # max_concurrency here sizes this process's connection pool; the limiter caps the fleet.
        async with FlexClient(max_concurrency=10, limiter=limiter) as client:
            async with client.participants_for_channels(channels) as batch:
                async for result in batch:
                    if result.error is not None:
                        print(result.channel_sid, "failed:", result.error)
                    else:
                        print(result.channel_sid, len(result.participants))
        state = await limiter.read_state()
        print(f"fleet: {state.in_flight} in flight now, at most {state.peak_in_flight} at once")
        print(f"fleet: {state.rate:g} requests a second now")
    finally:
        # Closed after the client, which may still give slots back while it closes.
        await redis.aclose()


if __name__ == "__main__":
    sids = sys.argv[1:]
    asyncio.run(main(list(zip(sids[::2], sids[1::2], strict=True))))
