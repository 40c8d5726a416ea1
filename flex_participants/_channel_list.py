"""Channel lists: the one format of a file of channels, read and written.

A channel list is CSV or JSON lines. CSV rows are ``interaction_sid,channel_sid``, with or
without that header row (a header may name more columns, in any order). JSON lines are
``{"interaction_sid": ..., "channel_sid": ...}``. The format is told by the first line that
is not blank: ``{`` starts JSON lines. Blank lines and lines starting with ``#`` are skipped.
Every channel's SIDs are checked as its line is read, so that a malformed line is an error
naming the line before any request is made for it, not a failed channel.

`write_channel_list` writes CSV with the header; `read_channel_list` reads what it wrote, and
what ``flex-participants export --channels`` reads.
"""

from __future__ import annotations

import csv
import functools
import json
import os
from collections.abc import Iterable, Iterator
from typing import Final

from ._errors import InvalidArgumentError
from ._request import check_sids

__all__ = ["ChannelListError", "ChannelListParser", "read_channel_list", "write_channel_list"]

_HEADER: Final = ("interaction_sid", "channel_sid")


class ChannelListError(InvalidArgumentError):
    """A line of a channel list is not a channel; the message names the list and the line."""


class ChannelListParser:
    """Turns the lines of one channel list, one at a time, into ``(interaction_sid,
    channel_sid)`` pairs: for a list that is read as it arrives (a pipe, a socket).

    `read_channel_list` reads a whole file with one.

    Args:
        name: the list's name in error messages (its path, or ``stdin``).
    """

    MAX_LINE: Final = 1 << 20
    """The longest line of a channel list, in bytes (a channel takes some 70)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._json: bool | None = None
        self._columns = (0, 1)
        self.number = 0
        """The number of the last line parsed."""

    def parse(self, raw: bytes | str) -> tuple[str, str] | None:
        """The channel on the next line, ``raw``; ``None`` for a blank line, a comment or the
        header.

        Raises:
            ChannelListError: the line is not a channel: too long, not UTF-8, not CSV or
                JSON, too few columns, or SIDs that are not an interaction's and a channel's.
        """
        self.number += 1
        number = self.number
        # Text is taken as its UTF-8 bytes: one rule for the length; a lone surrogate, which
        # no file can hold, becomes a replacement character and fails the SID check.
        data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
        if len(data.removesuffix(b"\n").removesuffix(b"\r")) > self.MAX_LINE:
            raise self._error(number, self._too_long())
        try:
            line = data.decode("utf-8").strip()
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
        channel = self._from_json(line, number) if self._json else self._from_csv(line, number)
        try:
            return check_sids(*channel)
        except InvalidArgumentError as exc:
            raise self._error(number, f"is not a channel: {exc}") from None

    def next_line_too_long(self) -> ChannelListError:
        """The error for a next line found longer than `MAX_LINE` before it was read whole."""
        return self._error(self.number + 1, self._too_long())

    def _too_long(self) -> str:
        return f"is longer than {self.MAX_LINE:,} bytes"

    def _cells(self, line: str, number: int) -> list[str]:
        try:
            return next(csv.reader([line]))
        except csv.Error as exc:  # a field over the csv module's limit, or a stray quote
            raise self._error(number, f"is not CSV ({exc})") from None

    def _is_header(self, line: str, number: int) -> bool:
        cells = [cell.strip().lower() for cell in self._cells(line, number)]
        if all(column in cells for column in _HEADER):
            self._columns = (cells.index(_HEADER[0]), cells.index(_HEADER[1]))
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

    def _error(self, number: int, problem: str) -> ChannelListError:
        return ChannelListError(f"{self._name} line {number} {problem}")


def read_channel_list(
    source: str | os.PathLike[str] | Iterable[bytes | str], *, name: str | None = None
) -> Iterator[tuple[str, str]]:
    """Yield the channels of a channel list, a line at a time.

    A generator: the list is read only as fast as its channels are taken, so a batch given
    it holds no more of the list in memory than it is working on.

    Args:
        source: the path of a channel list, or its lines (an open file, in binary or text
            mode, ``sys.stdin``, a list of strings).
        name: what error messages call the list (default: the path, or the file's name).

    Raises:
        OSError: the file cannot be opened or read.
        ChannelListError: a line is not a channel (see `ChannelListParser.parse`); the
            channels before it have been yielded.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as file:
            # Each line cut a little over the limit, so that an endless line is not read whole.
            lines = iter(functools.partial(file.readline, ChannelListParser.MAX_LINE + 2), b"")
            yield from read_channel_list(lines, name=name or os.fspath(source))
        return
    parser = ChannelListParser(name or str(getattr(source, "name", "the channel list")))
    for raw in source:
        channel = parser.parse(raw)
        if channel is not None:
            yield channel


def write_channel_list(path: str | os.PathLike[str], channels: Iterable[tuple[str, str]]) -> int:
    """Write ``channels`` to ``path`` as a CSV channel list with its header row; return how
    many were written.

    Raises:
        OSError: the file cannot be written.
    """
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(_HEADER)
        for channel in channels:
            writer.writerow(channel)
            count += 1
    return count
