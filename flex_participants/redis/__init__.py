"""One request budget for a fleet, kept in Redis: ``pip install 'flex-participants[redis]'``.

Example::

    redis = Redis.from_url(REDIS_URL)  # redis.asyncio.Redis, made in the loop that uses it
    async with FlexClient(limiter=RedisLimiter(redis, max_concurrency=20)) as client:
        ...
    await redis.aclose()

Every process of the fleet gives its client a `RedisLimiter` on the same ``key``. The limiter
borrows the Redis client: the application makes it and closes it, after the client.
"""

try:
    import redis.asyncio  # noqa: F401 - only to fail early, with the extra's name
except ImportError as exc:
    raise ImportError(
        "flex_participants.redis needs redis-py: pip install 'flex-participants[redis]'"
    ) from exc

from ._limiter import RedisLimiter, RedisLimitState

__all__ = ["RedisLimitState", "RedisLimiter"]
