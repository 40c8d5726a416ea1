"""Fetch many channels within Twilio's request budget, told or not, and see what it cost.

    python rate_budget.py [RATE]

With no RATE, the client finds the budget itself; with one, it is told it.
"""

import asyncio
import sys

from flex_participants import AdaptiveLimiter, FlexClient
from flex_participants.emulator import FlexEmulator


async def main(told: float | None = None) -> tuple[int, float | None]:
    # An emulator enforcing half of Twilio's documented 20 requests a second, as a token
    # bucket holding 5: as if another app spent the other half.
    async with FlexEmulator(rate_limit=10, burst=5, latency=0.05) as emulator:
        channels = [emulator.add_channel(participants=20) for _ in range(60)]
        async with FlexClient(
            **emulator.client_kwargs(), rate_limit="adaptive" if told is None else told
        ) as client:
            async with client.participants_for_channels(channels) as batch:
                delivered = sum([len(result.participants) async for result in batch])
            limiter = client.limiter
            assert isinstance(limiter, AdaptiveLimiter)
            print(f"{delivered} participants of {len(channels)} channels")
            print(
                f"{limiter.throttled} requests answered 429; the rate is now {limiter.rate:.1f} /s"
            )
            return limiter.throttled, limiter.rate


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else None))
