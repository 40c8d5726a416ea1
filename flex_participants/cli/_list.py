"""``flex-participants list``: one channel's participants, to stdout."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from flex_participants import InvalidArgumentError, Participant, ParticipantStream, to_dict

from ._connection import client_from_args
from ._errors import UsageError
from ._formats import FileFormat, encode, file_header

__all__ = ["run_list"]


async def run_list(args: argparse.Namespace) -> int:
    """List the participants of ``args.interaction_sid``/``args.channel_sid`` in ``args.format``.

    JSON lines and CSV are written page by page as they arrive; a table once all are in.

    Raises:
        UsageError: bad options or SIDs.
        FlexError: the API failed.
    """
    async with client_from_args(args) as client:
        try:
            stream = client.participants(
                args.interaction_sid, args.channel_sid, page_size=args.page_size, limit=args.limit
            )
        except InvalidArgumentError as exc:
            raise UsageError(str(exc)) from None
        async with stream:
            if args.format == "table":
                participants = await stream.collect()
                Console().print(_table(args.interaction_sid, args.channel_sid, participants))
            else:
                await _write_lines(stream, args.format)
    return 0


async def _write_lines(stream: ParticipantStream, file_format: FileFormat) -> None:
    out = sys.stdout
    out.write(file_header(file_format))
    async for page in stream.pages():
        out.write(encode(file_format, page.participants))
        out.flush()
    out.flush()


def _table(interaction_sid: str, channel_sid: str, participants: list[Participant]) -> Table:
    table = Table(
        title=f"Participants of {interaction_sid} / {channel_sid}",
        caption=f"{len(participants)} participants",
    )
    table.add_column("#", justify="right", style="dim")
    table.add_column("sid", no_wrap=True)
    table.add_column("type")
    table.add_column("routing_properties", overflow="fold")
    for number, participant in enumerate(participants, start=1):
        routing = to_dict(participant)["routing_properties"]
        table.add_row(
            str(number),
            participant.sid or "",
            str(participant.type),
            "" if routing is None else json.dumps(routing, separators=(",", ":")),
        )
    return table
