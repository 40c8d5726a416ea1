"""The channel list of an export: a CSV or JSON-lines file, a pipe, a FIFO or stdin, read once.

The format is the package's one channel list (`flex_participants.ChannelListParser` reads
it, a line at a time). A line that is not a channel (longer than `MAX_LINE` bytes, a CSV
field longer than the csv module's field limit, a JSON line nested too deeply, a malformed
SID) is a `ChannelInputError` naming the line: a usage error.

A regular file is counted (and every line checked) before the export starts, so that the
progress bar knows the total; anything else (a pipe, a FIFO, bash's ``<(...)``, a terminal)
can be read only once, and is read as the export goes, without a total.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncGenerator, Iterable, Iterator
from types import TracebackType
from typing import BinaryIO, Final, Self

from flex_participants import ChannelListError, ChannelListParser, read_channel_list

from ._main import UsageError

__all__ = [
    "MAX_LINE",
    "STDIN",
    "ChannelInputError",
    "ChannelSource",
    "file_identity",
]

STDIN: Final = "-"
MAX_LINE: Final = ChannelListParser.MAX_LINE
"""The longest line of a channel list, in bytes."""


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


@contextlib.contextmanager
def _as_usage_error() -> Iterator[None]:
    """A line that is not a channel is the command line's error: exit code 2."""
    try:
        yield
    except ChannelListError as exc:
        raise ChannelInputError(str(exc)) from None


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
            with _as_usage_error():
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
        parser = ChannelListParser(self.name)
        async with contextlib.aclosing(self._stream_lines(parser)) as lines:
            async for raw in lines:
                with _as_usage_error():
                    parsed = parser.parse(raw)
                if parsed is not None:
                    yield parsed

    def _parsed(self, lines: Iterable[bytes]) -> Iterator[tuple[str, str]]:
        return read_channel_list(lines, name=self.name)

    def _lines(self) -> Iterator[bytes]:
        """The lines of a file that is not streamed, each cut at a little over `MAX_LINE`."""
        # A duplicate, for the file object to close; the list keeps its own descriptor.
        file: BinaryIO = open(os.dup(self._fd), "rb")  # noqa: SIM115
        with file:
            while line := file.readline(MAX_LINE + 2):
                yield line

    async def _stream_lines(self, parser: ChannelListParser) -> AsyncGenerator[bytes]:
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
                    raise ChannelInputError(str(parser.next_line_too_long())) from None
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
