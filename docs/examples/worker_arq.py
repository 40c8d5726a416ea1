"""An arq worker: one client per worker process, opened on startup and closed on shutdown.

    pip install flex-participants arq
    arq worker_arq.WorkerSettings

arq's queue is the Redis at REDIS_URL; the client reads its credentials from the environment.
"""

import os
from collections import Counter
from typing import Any

from arq.connections import RedisSettings

from flex_participants import FlexClient, NotFoundError

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")


async def startup(ctx: dict[str, Any]) -> None:
    # The client makes its session on first use, inside the worker's event loop.
    ctx["flex_client"] = FlexClient(max_concurrency=20)


async def shutdown(ctx: dict[str, Any]) -> None:
    client: FlexClient = ctx["flex_client"]
    await client.close()


async def count_participants(
    ctx: dict[str, Any], interaction_sid: str, channel_sid: str
) -> dict[str, int] | None:
    """The job: count a channel's participants by type; ``None`` if the channel is gone."""
    client: FlexClient = ctx["flex_client"]
    try:
        async with client.participants(interaction_sid, channel_sid) as stream:
            return dict(Counter([str(p.type) async for p in stream]))
    except NotFoundError:
        return None  # not worth a retry; other errors fail the job and arq may retry it


class WorkerSettings:
    functions = (count_participants,)
    on_startup = startup
    on_shutdown = shutdown
    # The client's own limit bounds requests; this bounds jobs run at once by this worker.
    max_jobs = 50
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
