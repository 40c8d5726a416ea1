"""The channel list of an export: a CSV or JSON-lines file, or stdin, read lazily.

CSV rows are ``interaction_sid,channel_sid``, with or without that header row (a header may
name more columns, in any order). JSON lines are ``{"interaction_sid": ..., "channel_sid":
...}``. The format is told by the first line that is not blank: ``{`` starts JSON lines.
Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import stat
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ._errors import UsageError

__all__ = [
    "STDIN",
    "ChannelInputError",
    "count_channels",
    "read_channels",
    "write_channel_list",
]

STDIN = "-"


class ChannelInputError(UsageError):
    """A line of the channel list is not a channel."""


class _LineParser:
    """Turns the lines of one channel list into ``(interaction_sid, channel_sid)`` pairs."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._json: bool | None = None
        self._columns = (0, 1)

    def parse(self, raw: bytes, number: int) -> tuple[str, str] | None:
        """The channel on line ``number``, or ``None`` for a blank line, comment or header."""
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise self._error(number, "is not UTF-8") from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        if not line or line.startswith("#"):
            return None
        if self._json is None:
            self._json = line.startswith("{")
            if not self._json and self._is_header(line):
                return None
        return self._from_json(line, number) if self._json else self._from_csv(line, number)

    def _is_header(self, line: str) -> bool:
        cells = [cell.strip().lower() for cell in next(csv.reader([line]))]
        if "interaction_sid" in cells and "channel_sid" in cells:
            self._columns = (cells.index("interaction_sid"), cells.index("channel_sid"))
            return True
        return False

    def _from_csv(self, line: str, number: int) -> tuple[str, str]:
        cells = next(csv.reader([line]))
        if len(cells) <= max(self._columns):
            raise self._error(number, "has too few columns for interaction_sid,channel_sid")
        return cells[self._columns[0]].strip(), cells[self._columns[1]].strip()

    def _from_json(self, line: str, number: int) -> tuple[str, str]:
        try:
            item = json.loads(line)
        except ValueError:
            raise self._error(number, "is not JSON") from None
        if not isinstance(item, dict):
            raise self._error(number, "is not a JSON object")
        interaction_sid, channel_sid = item.get("interaction_sid"), item.get("channel_sid")
        if not (isinstance(interaction_sid, str) and isinstance(channel_sid, str)):
            raise self._error(number, 'lacks the strings "interaction_sid" and "channel_sid"')
        return interaction_sid, channel_sid

    def _error(self, number: int, problem: str) -> ChannelInputError:
        return ChannelInputError(f"{self._name} line {number} {problem}")


def _parsed(name: str, lines: Iterable[bytes]) -> Iterator[tuple[str, str]]:
    parser = _LineParser(name)
    for number, raw in enumerate(lines, start=1):
        channel = parser.parse(raw, number)
        if channel is not None:
            yield channel


def _open(source: str) -> BinaryIO:
    try:
        return open(source, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read the channel list {source}: {exc.strerror}") from None


def count_channels(source: str) -> int | None:
    """How many channels ``source`` lists, or ``None`` for stdin; checks every line.

    Raises:
        UsageError: the file cannot be read.
        ChannelInputError: a line is not a channel.
    """
    if source == STDIN:
        return None
    with _open(source) as file:
        return sum(1 for _ in _parsed(source, file))


async def read_channels(source: str) -> AsyncGenerator[tuple[str, str]]:
    """Yield the channels of ``source`` (a path, or ``-`` for stdin) as they are read.

    A pipe or terminal on stdin is read without blocking the event loop.

    Raises:
        UsageError: the file cannot be read.
        ChannelInputError: a line is not a channel.
    """
    if source != STDIN:
        with _open(source) as file:
            for channel in _parsed(source, file):
                yield channel
        return
    stdin = sys.stdin.buffer
    if stat.S_ISREG(os.fstat(stdin.fileno()).st_mode):
        for channel in _parsed("stdin", stdin):
            yield channel
        return
    parser = _LineParser("stdin")
    number = 0
    async for raw in _pipe_lines(stdin.fileno()):
        number += 1
        parsed = parser.parse(raw, number)
        if parsed is not None:
            yield parsed


async def _pipe_lines(fd: int) -> AsyncIterator[bytes]:
    """The lines of a pipe, terminal or socket, read by the event loop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    # A duplicate, so that closing the transport leaves the process's own fd open.
    pipe = open(os.dup(fd), "rb", buffering=0)  # noqa: ASYNC230, SIM115 - the transport owns it
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        while line := await reader.readline():
            yield line
    finally:
        transport.close()
        os.set_blocking(fd, True)  # the duplicate shared the non-blocking mode with ``fd``


def write_channel_list(path: Path, channels: Iterable[tuple[str, str]]) -> int:
    """Write ``channels`` to ``path`` as CSV with a header; return how many were written."""
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["interaction_sid", "channel_sid"])
        for channel in channels:
            writer.writerow(channel)
            count += 1
    return count
