"""One worker of a fleet, run as its own process by ``tests/test_redis_limit.py``.

Reads a JSON job from its first argument: where Redis is, the limiter's key, cap and
(optionally) ``rate_limit`` and ``burst``, and what to do. By default it fetches the job's
channels from the API with a batch whose every request takes a slot of the shared
`RedisLimiter`, and prints one JSON line: participants per channel, and errors. With
``"hold": n`` it takes ``n`` slots, prints ``{"held": n}`` and keeps them until it is killed, as
a worker stuck in long requests would. With ``"take": n`` it asks for ``n`` slots at once, prints
``{"took": n}`` once it has them all, and gives them back when a line comes on its stdin.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import redis.asyncio as aioredis

from flex_participants import FlexClient, RetryPolicy
from flex_participants.redis import RedisLimiter


async def fetch(limiter: RedisLimiter, job: dict[str, Any]) -> dict[str, Any]:
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


async def hold(limiter: RedisLimiter, slots: int) -> None:
    permits = [await limiter.acquire() for _ in range(slots)]
    print(json.dumps({"held": len(permits)}), flush=True)
    await asyncio.Event().wait()  # until killed; the permits stay referenced here


async def take(limiter: RedisLimiter, slots: int) -> None:
    permits = await asyncio.gather(*(limiter.acquire() for _ in range(slots)))
    print(json.dumps({"took": len(permits)}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    for permit in permits:
        await limiter.release(permit, throttled=False)


async def run(job: dict[str, Any]) -> dict[str, Any] | None:
    redis = aioredis.Redis(host="127.0.0.1", port=job["redis_port"])
    try:
        limiter = RedisLimiter(
            redis,
            key=job["key"],
            max_concurrency=job["cap"],
            rate_limit=job.get("rate_limit"),
            burst=job.get("burst"),
            lease_seconds=job.get("lease_seconds", 10.0),
        )
        if "hold" in job:
            await hold(limiter, job["hold"])
            return None
        if "take" in job:
            await take(limiter, job["take"])
            return None
        return await fetch(limiter, job)
    finally:
        await redis.aclose()


def main() -> None:
    job = json.loads(sys.argv[1])
    report = asyncio.run(run(job))
    if report is not None:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
