"""``flex-participants list``: one channel's participants, to stdout."""

from __future__ import annotations

import argparse
import asyncio
import sys

from rich.table import Table

from flex_participants import (
    FlexClient,
    InvalidArgumentError,
    Participant,
    ParticipantStream,
    to_dict,
)

from ._main import CommandError, UsageError, client_from_args, read_secret_files
from ._render import (
    FileFormat,
    UnwritableError,
    encode,
    file_header,
    inert,
    routing_json,
    stdout_console,
)

__all__ = ["run_list"]


def run_list(args: argparse.Namespace) -> int:
    """List the participants of ``args.interaction_sid``/``args.channel_sid`` in ``args.format``.

    JSON lines and CSV are written page by page as they arrive; a table once all are in.

    Raises:
        UsageError: bad options or SIDs.
        CommandError: standard output is closed, or a participant cannot be written in the
            format asked for.
        FlexError: the API failed.
    """
    if sys.stdout is None:  # started with it closed (`>&-`): the participants would go nowhere
        raise CommandError("standard output is closed: there is nowhere to write the participants")
    read_secret_files(args)
    return asyncio.run(_list(args, client_from_args(args)))


async def _list(args: argparse.Namespace, client: FlexClient) -> int:
    async with client:
        try:
            stream = client.participants(
                args.interaction_sid, args.channel_sid, page_size=args.page_size, limit=args.limit
            )
        except InvalidArgumentError as exc:
            raise UsageError(str(exc)) from None
        async with stream:
            try:
                if args.format == "table":
                    participants = await stream.collect()
                    stdout_console().print(
                        _table(args.interaction_sid, args.channel_sid, participants)
                    )
                else:
                    await _write_lines(stream, args.format)
            except UnwritableError as exc:
                raise CommandError(f"cannot write this channel as {args.format}: {exc}") from None
    return 0


async def _write_lines(stream: ParticipantStream, file_format: FileFormat) -> None:
    out = sys.stdout.buffer
    out.write(file_header(file_format))
    async for page in stream.pages():
        out.write(encode(file_format, page.participants))
        out.flush()
    out.flush()


def _table(interaction_sid: str, channel_sid: str, participants: list[Participant]) -> Table:
    # Every cell is inert: participant data never reaches the terminal as markup or controls.
    table = Table(
        title=inert(f"Participants of {interaction_sid} / {channel_sid}"),
        caption=f"{len(participants)} participants",
    )
    table.add_column("#", justify="right", style="dim")
    table.add_column("sid", no_wrap=True)
    table.add_column("type")
    table.add_column("routing_properties", overflow="fold")
    for number, participant in enumerate(participants, start=1):
        table.add_row(
            str(number),
            inert(participant.sid or ""),
            inert(str(participant.type)),
            inert(routing_json(to_dict(participant)["routing_properties"])),
        )
    return table
