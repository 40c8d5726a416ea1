"""A hook that tallies the client's responses and retries, and the client's stats() after."""

import asyncio
import sys
from collections import Counter

from flex_participants import (
    Event,
    FlexClient,
    PageDelivered,
    RequestFailed,
    ResponseReceived,
    RetryScheduled,
)


class Tally:
    """Counts responses by status, failed requests and retries by error, pages delivered."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.failures: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.pages = 0
        self.slowest = 0.0

    def __call__(self, event: Event) -> None:
        # Called synchronously, in the task that made the request: keep it quick. An
        # exception here is logged by the client and does not fail the request.
        match event:
            case ResponseReceived(status=status, elapsed=elapsed):
                self.statuses[status] += 1
                self.slowest = max(self.slowest, elapsed)
            case RequestFailed(error=error):
                self.failures[type(error).__name__] += 1
            case RetryScheduled(error=error):
                self.retries[type(error).__name__] += 1
            case PageDelivered():
                self.pages += 1


async def main(interaction_sid: str, channel_sid: str) -> None:
    tally = Tally()
    async with FlexClient(hooks=[tally]) as client:
        participants = await client.participants(interaction_sid, channel_sid).collect()
        stats = client.stats()
    print(f"participants: {len(participants)} in {tally.pages} pages")
    print(
        "responses:", ", ".join(f"{n} x {status}" for status, n in sorted(tally.statuses.items()))
    )
    print("retried:", ", ".join(f"{n} x {name}" for name, n in sorted(tally.retries.items())))
    print(
        f"stats: {stats.requests} requests, {stats.retries} retries, {stats.throttled} 429s, "
        f"{stats.in_flight} in flight"
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
