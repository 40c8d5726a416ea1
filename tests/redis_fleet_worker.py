"""One worker of a fleet, run as its own process by ``tests/test_redis_limit.py``.

Reads a JSON job from its first argument: where Redis and the API are, the limiter's key and
cap, and the channels to fetch. Fetches them with a batch whose every request takes a slot of
the shared `RedisLimiter`, and prints one JSON line: participants per channel, and errors.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import redis.asyncio as aioredis

from flex_participants import FlexClient, RedisLimiter, RetryPolicy


async def run(job: dict[str, Any]) -> dict[str, Any]:
    redis = aioredis.Redis(host="127.0.0.1", port=job["redis_port"])
    try:
        limiter = RedisLimiter(redis, key=job["key"], max_concurrency=job["cap"])
        channels = [(kd, uo) for kd, uo in job["channels"]]
        counts: dict[str, int] = {}
        errors: list[str] = []
        async with FlexClient(
            **job["client"],
            max_concurrency=job["window"],
            limiter=limiter,
            retry=RetryPolicy(backoff_base=0.01),
        ) as client:
            async for result in client.participants_for_channels(channels):
                if result.error is not None:
                    errors.append(f"{result.channel_sid}: {result.error}")
                else:
                    counts[result.channel_sid] = len(result.participants)
        return {
            "counts": counts,
            "errors": errors,
            "peak_in_flight": limiter.peak_in_flight,
            "throttled": limiter.throttled,
        }
    finally:
        await redis.aclose()


def main() -> None:
    job = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(run(job))))


if __name__ == "__main__":
    main()
