"""Export a channel in chunks, saving the cursor after each, so that a restart goes on."""

import asyncio
import sys
from pathlib import Path

from flex_participants import FlexClient


def load(saved: Path) -> str | None:
    return saved.read_text() if saved.exists() else None


def save(saved: Path, cursor: str) -> None:
    saved.write_text(cursor)


async def export_chunk(
    client: FlexClient, interaction_sid: str, channel_sid: str, saved: Path, chunk: int
) -> int:
    """Export up to ``chunk`` more participants; return how many (0: the channel is done)."""
    stream = client.participants(interaction_sid, channel_sid, cursor=load(saved), limit=chunk)
    count = 0
    async with stream:
        async for participant in stream:
            print(participant.sid)
            count += 1
    if stream.cursor is not None:  # None: nothing was delivered, the saved cursor stands
        save(saved, stream.cursor)
    return count


async def main(interaction_sid: str, channel_sid: str, saved: Path, chunk: int = 100) -> None:
    async with FlexClient() as client:
        while await export_chunk(client, interaction_sid, channel_sid, saved, chunk):
            pass


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
