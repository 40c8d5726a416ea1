"""Try the client without a Twilio account: against the emulator, on this machine."""

import asyncio

from flex_participants import FlexClient
from flex_participants.emulator import FlexEmulator


async def main() -> None:
    async with FlexEmulator(seed=42) as emulator:
        interaction_sid, channel_sid = emulator.add_channel(participants=120)
        # client_kwargs() gives the emulator's base_url and the credentials it accepts.
        async with FlexClient(**emulator.client_kwargs()) as client:
            participants = await client.participants(interaction_sid, channel_sid).collect()
            print(f"{len(participants)} participants in {emulator.stats.requests} requests")
            for participant in participants[:3]:
                print(participant.sid, participant.type)


if __name__ == "__main__":
    asyncio.run(main())
