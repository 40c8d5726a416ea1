"""Print every participant of one channel: ``python quickstart.py KD... UO...``."""

import asyncio
import sys

from flex_participants import FlexClient


async def main(interaction_sid: str, channel_sid: str) -> None:
    # Credentials come from TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN
    # (or TWILIO_API_KEY and TWILIO_API_SECRET).
    async with FlexClient() as client:
        stream = client.participants(interaction_sid, channel_sid)
        async with stream:
            async for participant in stream:
                print(participant.sid, participant.type, participant.routing_properties)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
