"""The client's log: each retry at INFO, each request at DEBUG, on the "flex_participants" logger.

python observe_logging.py INTERACTION_SID CHANNEL_SID [-v]
"""

import asyncio
import logging
import sys

from flex_participants import FlexClient


def show_client_log(verbose: bool) -> logging.Handler:
    """Print the client's retries (and with ``verbose`` every request) to stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("flex_participants")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler


async def main(interaction_sid: str, channel_sid: str) -> None:
    async with FlexClient() as client:
        participants = await client.participants(interaction_sid, channel_sid).collect()
    print(f"participants: {len(participants)}")


if __name__ == "__main__":
    # Without a handler of the application's own, the library prints nothing at all.
    show_client_log(verbose="-v" in sys.argv[3:])
    asyncio.run(main(sys.argv[1], sys.argv[2]))
