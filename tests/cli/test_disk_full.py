"""An export that meets a full disk stops, and its journal says what its report says: every
channel it did not write is noted as failed, and the journal stays one that a resume reads."""

from __future__ import annotations

import errno
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from flex_participants import FlexClient
from flex_participants.cli._export import ExportReport, export_channels
from flex_participants.cli._journal import FileOperations, JournaledOutput
from flex_participants.emulator import Fault, FlexEmulator

from .helpers import add_channels, journaled, journaled_failures

ROOM = 200
"""Bytes a write may still take: a journal line fits, a channel's rows do not."""


class FullDisk(FileOperations):
    """The operating system's file operations on a disk with room for small writes only."""

    def write(self, fd: int, data: memoryview) -> int:
        if len(data) > ROOM:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(fd, data)


class Unobserved:
    def started(self, total: int | None) -> None:
        pass

    def skipped(self) -> None:
        pass

    def finished(self, participants: int, *, failed: bool) -> None:
        pass


async def test_channels_in_flight_when_the_disk_fills_are_noted_in_the_journal_as_failed(
    emulator: FlexEmulator, tmp_path: Path
) -> None:
    small = add_channels(emulator, [0, 0])  # no rows: only their journal lines are written
    large = add_channels(emulator, [20])
    slow = add_channels(emulator, [1, 1])  # still in flight when the disk is found full
    for _, uo in slow:
        emulator.add_fault(Fault("slow", delay=30, channel_sid=uo))
    channels = small + large + slow

    async def listed() -> AsyncGenerator[tuple[str, str]]:
        for channel in channels:
            yield channel

    out = tmp_path / "out.jsonl"
    report = ExportReport(out, "jsonl")
    async with FlexClient(**emulator.client_kwargs()) as client:
        with JournaledOutput.create(
            out, file_format="jsonl", header=b"", force=False, files=FullDisk()
        ) as output:
            with pytest.raises(OSError, match="No space left"):
                await export_channels(client, listed(), output, report, Unobserved())

    # The small channels are written unless the disk was found full before they were.
    assert set(large + slow) <= set(report.unreported)
    assert set(journaled(out)) | set(report.unreported) == set(channels)
    assert journaled_failures(out) == [(kd, uo, "OSError") for kd, uo in report.unreported]


class FullOnce(FileOperations):
    """A disk that fills in the middle of the ``nth`` write (from 0), then has room again."""

    def __init__(self, nth: int) -> None:
        self.nth = nth
        self.writes = 0

    def write(self, fd: int, data: memoryview) -> int:
        self.writes += 1
        if self.writes - 1 == self.nth:
            super().write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(fd, data)


def test_a_journal_line_cut_short_by_a_full_disk_is_removed_before_the_next_note(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.jsonl"
    # Writes: the journal's first line, a's rows, a's line, b's rows, then b's line is cut.
    with JournaledOutput.create(
        out, file_format="jsonl", header=b"", force=False, files=FullOnce(4)
    ) as output:
        output.commit("KDa", "UOa", b"a\n")
        with pytest.raises(OSError, match="No space left"):
            output.commit("KDb", "UOb", b"b\n")
        output.note_failure("KDb", "UOb", "OSError")
    assert journaled(out) == [("KDa", "UOa")]
    assert journaled_failures(out) == [("KDb", "UOb", "OSError")]
    with JournaledOutput.resume(out, file_format="jsonl", header=b"") as resumed:
        assert resumed.finished == {("KDa", "UOa")}
    assert out.read_bytes() == b"a\n"


def test_after_a_failed_commit_no_other_channel_is_committed(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    # Writes: the journal's first line, then a's rows are cut short: they stay in the file.
    with JournaledOutput.create(
        out, file_format="jsonl", header=b"", force=False, files=FullOnce(1)
    ) as output:
        with pytest.raises(OSError, match="No space left"):
            output.commit("KDa", "UOa", b"a-rows\n")
        # Journaled after a's partial rows, b would be at the wrong offset.
        with pytest.raises(OSError, match="an earlier write failed"):
            output.commit("KDb", "UOb", b"b\n")
    assert journaled(out) == []
