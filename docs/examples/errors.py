"""Retries, throttling, timeouts and typed errors, with the client's log on stderr."""

import asyncio
import logging
import sys

from flex_participants import (
    AuthenticationError,
    FlexClient,
    FlexError,
    NotFoundError,
    RateLimitError,
    RetryPolicy,
)

# Up to 6 attempts; waits drawn from [0, 0.5 s], [0, 1 s], [0, 2 s], ... never above 10 s,
# unless the server's Retry-After asks for more (honoured up to 60 s). A 429 only means the
# budget is full: for 2 minutes from a request's first attempt, 429s are retried without
# counting as attempts.
RETRY = RetryPolicy(
    max_attempts=6, backoff_base=0.5, backoff_max=10.0, retry_after_max=60.0, patience=120.0
)


async def count(client: FlexClient, interaction_sid: str, channel_sid: str) -> int | None:
    """How many participants the channel has; ``None`` if it does not exist."""
    try:
        participants = await client.participants(interaction_sid, channel_sid).collect()
    except NotFoundError:
        return None
    except AuthenticationError:
        raise  # wrong credentials, or no access: retrying will not help
    except RateLimitError as exc:
        # Still throttled when patience ran out: back off for longer than the policy did.
        print(f"throttled {exc.attempts} times; server asked for {exc.retry_after} s")
        raise
    except FlexError as exc:
        # Server errors, timeouts and broken responses, after their retries.
        print(f"gave up on {channel_sid} after {exc.attempts} attempts: {exc}")
        raise
    return len(participants)


async def main(interaction_sid: str, channel_sid: str) -> None:
    async with FlexClient(
        retry=RETRY,
        timeout=10.0,  # seconds per attempt, connecting and reading the body included
        max_concurrency=8,  # requests in flight at once, across everything this client does
        rate_limit=20.0,  # requests started per second, at most
    ) as client:
        print("participants:", await count(client, interaction_sid, channel_sid))
        print(f"{client.requests_sent} requests, {client.retries} of them retries")


if __name__ == "__main__":
    # Each retry is logged at INFO on the "flex_participants" logger; DEBUG adds one line
    # per request, with its status and duration. Credentials never appear in either.
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("flex_participants").setLevel(logging.DEBUG)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
