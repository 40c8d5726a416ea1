"""Export the participants of many channels to JSON Lines, each channel as it completes.

    python batch_export.py channels.csv participants.jsonl

``channels.csv`` is a channel list: ``interaction_sid,channel_sid`` rows, the header optional
(as ``flex-participants emulator --channel-list`` writes it), or JSON lines.
"""

import asyncio
import json
import sys
from pathlib import Path

from flex_participants import ChannelListError, FlexClient, read_channel_list, to_dict


async def main(channels_csv: Path, output: Path) -> int:
    """Write one JSON line per channel; return how many channels failed."""
    # A generator: the batch reads it only as fast as channels are fetched, so the file is
    # never held in memory, however long it is. Each line's SIDs are checked as it is read.
    channels = read_channel_list(channels_csv)
    async with FlexClient(max_concurrency=20) as client:
        batch = client.participants_for_channels(channels, page_size=1000)
        with output.open("w") as out:
            async with batch:
                async for result in batch:
                    line: dict[str, object] = {
                        "interaction_sid": result.interaction_sid,
                        "channel_sid": result.channel_sid,
                    }
                    if result.error is not None:
                        line["error"] = str(result.error)
                    else:
                        line["participants"] = [to_dict(p) for p in result.participants]
                    out.write(json.dumps(line) + "\n")
        print(f"{batch.completed} channels, {batch.failed} failed")
        return batch.failed


if __name__ == "__main__":
    try:
        failed = asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
    except ChannelListError as exc:  # the channels before the bad line are written
        sys.exit(f"bad channel list: {exc}")
    sys.exit(1 if failed else 0)
