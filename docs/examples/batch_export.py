"""Export the participants of many channels to JSON Lines, each channel as it completes.

    python batch_export.py channels.csv participants.jsonl

``channels.csv`` holds one ``interaction_sid,channel_sid`` pair per line.
"""

import asyncio
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from flex_participants import FlexClient, to_dict


def read_channels(path: Path) -> Iterator[tuple[str, str]]:
    # A generator: the batch reads it only as fast as channels are fetched, so the file
    # is never held in memory, however long it is.
    with path.open(newline="") as file:
        for row in csv.reader(file):
            if row:
                yield row[0].strip(), row[1].strip()


async def main(channels_csv: Path, output: Path) -> int:
    """Write one JSON line per channel; return how many channels failed."""
    async with FlexClient(max_concurrency=20) as client:
        batch = client.participants_for_channels(read_channels(channels_csv), page_size=1000)
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
    failed = asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
    sys.exit(1 if failed else 0)
