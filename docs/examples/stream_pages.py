"""Ways to walk a channel: by participant, by page, up to a limit, and leaving early."""

import asyncio
import sys

from flex_participants import FlexClient, Participant, ParticipantType


async def first_agent(
    client: FlexClient, interaction_sid: str, channel_sid: str
) -> Participant | None:
    # Leaving the loop early: `async with` cancels the prefetch of the next page at once.
    async with client.participants(interaction_sid, channel_sid) as stream:
        async for participant in stream:
            if participant.type is ParticipantType.AGENT:
                return participant
    return None


async def page_by_page(client: FlexClient, interaction_sid: str, channel_sid: str) -> None:
    # 200 participants per request, and up to two pages requested ahead of this loop.
    stream = client.participants(interaction_sid, channel_sid, page_size=200, prefetch=2)
    async with stream:
        async for page in stream.pages():
            print(f"page {page.meta.page}: {len(page.participants)} participants")


async def a_sample(client: FlexClient, interaction_sid: str, channel_sid: str) -> list[Participant]:
    # At most 10 participants: one request for a page of 10, whatever the channel's size.
    return await client.participants(interaction_sid, channel_sid, limit=10).collect()


async def main(interaction_sid: str, channel_sid: str) -> None:
    async with FlexClient() as client:
        agent = await first_agent(client, interaction_sid, channel_sid)
        print("first agent:", agent.sid if agent else None)
        await page_by_page(client, interaction_sid, channel_sid)
        sample = await a_sample(client, interaction_sid, channel_sid)
        print("sample:", [participant.sid for participant in sample])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
