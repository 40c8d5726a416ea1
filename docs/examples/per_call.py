"""Per-call control: a quick look with a short deadline, and a patient export."""

import asyncio
import sys

from flex_participants import (
    DeadlineExceededError,
    FlexClient,
    Participant,
    ParticipantPage,
    RetryPolicy,
)

# A page for a live dashboard: attempts of at most 2 s, retried after short waits, and
# 3 s for the whole call: a dashboard that waits longer is no use.
QUICK = RetryPolicy(max_attempts=3, backoff_base=0.2)
# An export may take its time: more attempts, longer waits between them.
PATIENT = RetryPolicy(max_attempts=8, backoff_max=60.0)


async def glance(
    client: FlexClient, interaction_sid: str, channel_sid: str
) -> ParticipantPage | None:
    try:
        return await client.fetch_page(
            interaction_sid, channel_sid, page_size=10, timeout=2.0, retry=QUICK, deadline=3.0
        )
    except DeadlineExceededError as error:
        print(f"no page within {error.deadline:g} s")
        return None


async def export(client: FlexClient, interaction_sid: str, channel_sid: str) -> list[Participant]:
    # Ten minutes for the whole stream, from its first request to its last page.
    stream = client.participants(interaction_sid, channel_sid, retry=PATIENT, deadline=600.0)
    return await stream.collect()


async def main(interaction_sid: str, channel_sid: str) -> None:
    async with FlexClient() as client:
        page = await glance(client, interaction_sid, channel_sid)
        print("glance:", None if page is None else len(page.participants))
        print("export:", len(await export(client, interaction_sid, channel_sid)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
