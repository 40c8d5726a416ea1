"""A plain asyncio worker: a fixed number of tasks take jobs from a queue and share one client."""

import asyncio
import logging
import sys
from collections import Counter
from collections.abc import Iterable

from flex_participants import FlexClient, FlexError, read_channel_list

logger = logging.getLogger("worker")

Job = tuple[str, str]


async def work(
    client: FlexClient, jobs: asyncio.Queue[Job | None], counts: dict[str, Counter[str]]
) -> None:
    while (job := await jobs.get()) is not None:
        interaction_sid, channel_sid = job
        try:
            async with client.participants(interaction_sid, channel_sid) as stream:
                counts[channel_sid] = Counter([str(p.type) async for p in stream])
        except FlexError as exc:
            # One job failing does not stop the worker; log it and take the next one.
            logger.error("channel %s failed: %s", channel_sid, exc)


async def main(jobs: Iterable[Job], workers: int = 4) -> dict[str, Counter[str]]:
    """Count each channel's participants by type."""
    queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=workers * 2)
    counts: dict[str, Counter[str]] = {}
    # The TaskGroup waits for every worker before the client closes.
    async with FlexClient(max_concurrency=workers) as client, asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(work(client, queue, counts))
        for job in jobs:
            await queue.put(job)  # waits while the queue is full: memory stays bounded
        for _ in range(workers):
            await queue.put(None)  # one "no more jobs" per worker
    return counts


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    # A channel list on stdin, as `flex-participants emulator --channel-list` writes it.
    jobs = list(read_channel_list(sys.stdin, name="stdin"))
    for channel_sid, by_type in asyncio.run(main(jobs)).items():
        print(channel_sid, dict(by_type))
