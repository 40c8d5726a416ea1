"""The channel list of an export: a CSV or JSON-lines file, a pipe, a FIFO or stdin, read once.

CSV rows are ``interaction_sid,channel_sid``, with or without that header row (a header may
name more columns, in any order). JSON lines are ``{"interaction_sid": ..., "channel_sid":
...}``. The format is told by the first line that is not blank: ``{`` starts JSON lines.
Blank lines and lines starting with ``#`` are skipped. A line longer than `MAX_LINE` bytes,
a CSV field longer than the csv module's field limit, or a JSON line nested too deeply is a
`ChannelInputError` naming the line.

A regular file is counted (and every line checked) before the export starts, so that the
progress bar knows the total; anything else (a pipe, a FIFO, bash's ``<(...)``, a terminal)
can be read only once, and is read as the export goes, without a total.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import stat
from collections.abc import AsyncGenerator, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Self

from ._main import UsageError

__all__ = [
    "MAX_LINE",
    "STDIN",
    "ChannelInputError",
    "ChannelSource",
    "file_identity",
    "write_channel_list",
]

STDIN: Final = "-"
MAX_LINE: Final = 1 << 20
"""The longest line of a channel list, in bytes (a channel takes some 70)."""
_TOO_LONG: Final = f"is longer than {MAX_LINE:,} bytes"


class ChannelInputError(UsageError):
    """A line of the channel list is not a channel."""


def file_identity(source: str) -> tuple[int, int] | None:
    """The device and inode of the channel list ``source`` (a path, or ``-`` for the file on
    stdin), which any other name of the same file shares (a hard link, a redirection); or
    ``None`` if it cannot be told."""
    try:
        status = os.fstat(0) if source == STDIN else os.stat(source)
    except OSError:
        return None
    return status.st_dev, status.st_ino


class _LineParser:
    """Turns the lines of one channel list into ``(interaction_sid, channel_sid)`` pairs."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._json: bool | None = None
        self._columns = (0, 1)
        self.number = 0
        """The number of the last line parsed."""

    def parse(self, raw: bytes) -> tuple[str, str] | None:
        """The channel on the next line, ``raw``, or ``None`` for a blank line, comment or header."""
        self.number += 1
        number = self.number
        if len(raw.removesuffix(b"\n").removesuffix(b"\r")) > MAX_LINE:
            raise self._error(number, _TOO_LONG)
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
            if not self._json and self._is_header(line, number):
                return None
        return self._from_json(line, number) if self._json else self._from_csv(line, number)

    def _cells(self, line: str, number: int) -> list[str]:
        try:
            return next(csv.reader([line]))
        except csv.Error as exc:  # a field over the csv module's limit, or a stray quote
            raise self._error(number, f"is not CSV ({exc})") from None

    def _is_header(self, line: str, number: int) -> bool:
        cells = [cell.strip().lower() for cell in self._cells(line, number)]
        if "interaction_sid" in cells and "channel_sid" in cells:
            self._columns = (cells.index("interaction_sid"), cells.index("channel_sid"))
            return True
        return False

    def _from_csv(self, line: str, number: int) -> tuple[str, str]:
        cells = self._cells(line, number)
        if len(cells) <= max(self._columns):
            raise self._error(number, "has too few columns for interaction_sid,channel_sid")
        return cells[self._columns[0]].strip(), cells[self._columns[1]].strip()

    def _from_json(self, line: str, number: int) -> tuple[str, str]:
        try:
            item = json.loads(line)
        except ValueError:
            raise self._error(number, "is not JSON") from None
        except RecursionError:
            raise self._error(number, "is JSON nested too deeply") from None
        if not isinstance(item, dict):
            raise self._error(number, "is not a JSON object")
        interaction_sid, channel_sid = item.get("interaction_sid"), item.get("channel_sid")
        if not (isinstance(interaction_sid, str) and isinstance(channel_sid, str)):
            raise self._error(number, 'lacks the strings "interaction_sid" and "channel_sid"')
        return interaction_sid, channel_sid

    def next_line_too_long(self) -> ChannelInputError:
        """The error for a next line found longer than `MAX_LINE` before it was read whole."""
        return self._error(self.number + 1, _TOO_LONG)

    def _error(self, number: int, problem: str) -> ChannelInputError:
        return ChannelInputError(f"{self._name} line {number} {problem}")


class ChannelSource:
    """One channel list, opened once; see the module docstring.

    Open it with `open` (before the event loop runs: opening a FIFO waits for its writer),
    then `count` it and read it with `channels`, and close it (``with`` closes it).
    """

    def __init__(self, name: str, fd: int, *, streamed: bool, restore_blocking: bool) -> None:
        self.name = name
        self._fd = fd
        self.streamed = streamed
        """Whether the list can be read only once (a pipe, FIFO, socket or terminal)."""
        self._restore_blocking = restore_blocking
        # A regular file is read once, by `count`, and its channels kept: read again, it could
        # have changed in between (a list regenerated in place, or the output itself).
        self._read: list[tuple[str, str]] | None = None

    @classmethod
    def open(cls, source: str) -> Self:
        """Open the channel list ``source``: a path, or ``-`` for stdin.

        Raises:
            UsageError: it cannot be opened, or is a directory.
        """
        try:
            if source == STDIN:
                # A duplicate, so that closing the list leaves the process's stdin open.
                fd, name = os.dup(0), "stdin"
            else:
                fd, name = os.open(source, os.O_RDONLY | os.O_CLOEXEC), source
        except OSError as exc:
            raise UsageError(f"cannot read the channel list {source}: {exc.strerror}") from None
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            os.close(fd)
            raise UsageError(f"the channel list {source} is a directory")
        # The event loop can wait for these without blocking; a regular file or a device such
        # as /dev/null never makes a reader wait (and epoll refuses them), so it is read as is.
        streamed = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)
        return cls(name, fd, streamed=streamed, restore_blocking=source == STDIN)

    def count(self) -> int | None:
        """How many channels the list holds, every line checked; ``None`` if it is streamed.

        Raises:
            ChannelInputError: a line is not a channel.
        """
        if self.streamed:
            return None
        if self._read is None:
            self._read = list(self._parsed(self._lines()))
        return len(self._read)

    async def channels(self) -> AsyncGenerator[tuple[str, str]]:
        """Yield the channels of the list as they are read; a stream is read by the event loop.

        Raises:
            ChannelInputError: a line is not a channel.
        """
        if not self.streamed:
            if self._read is None:
                self.count()
            assert self._read is not None
            for channel in self._read:
                yield channel
            return
        parser = _LineParser(self.name)
        async with contextlib.aclosing(self._stream_lines(parser)) as lines:
            async for raw in lines:
                parsed = parser.parse(raw)
                if parsed is not None:
                    yield parsed

    def _parsed(self, lines: Iterable[bytes]) -> Iterator[tuple[str, str]]:
        parser = _LineParser(self.name)
        for raw in lines:
            channel = parser.parse(raw)
            if channel is not None:
                yield channel

    def _lines(self) -> Iterator[bytes]:
        """The lines of a file that is not streamed, each cut at a little over `MAX_LINE`."""
        # A duplicate, for the file object to close; the list keeps its own descriptor.
        file: BinaryIO = open(os.dup(self._fd), "rb")  # noqa: SIM115
        with file:
            while line := file.readline(MAX_LINE + 2):
                yield line

    async def _stream_lines(self, parser: _LineParser) -> AsyncGenerator[bytes]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE + 2)
        pipe = open(os.dup(self._fd), "rb", buffering=0)  # noqa: ASYNC230, SIM115 - the transport owns it
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # over the reader's limit
                    raise parser.next_line_too_long() from None
                if not line:
                    return
                yield line
        finally:
            transport.close()

    def close(self) -> None:
        """Close the list. Idempotent."""
        if self._fd < 0:
            return
        if self._restore_blocking:
            # The event loop made the shared description non-blocking; stdin is the caller's.
            os.set_blocking(self._fd, True)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


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
