"""An export killed at any step of writing its output and journal leaves a pair on disk that
``--resume`` accepts, and the resume ends with every channel's rows in the output exactly once.

Each test stops the writer at its first file operation, then at its second, and so on until
it runs to its end: `KilledAt` raises `Killed` (which, like SIGKILL, nothing catches) at the
chosen step, after writing half of what that step's write was given.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from flex_participants.cli._journal import OS_FILES, FileOperations, JournaledOutput, journal_path

HEADER = b"sid,type\r\n"
CHANNELS: dict[tuple[str, str], bytes] = {
    ("KDa", "UOa"): b"a1\r\na2\r\n",
    ("KDb", "UOb"): b"",  # a channel without participants is journaled all the same
    ("KDc", "UOc"): b"c1\r\n",
    ("KDd", "UOd"): b"d1\r\nd2\r\nd3\r\n",
}


class Killed(BaseException):
    """Stands for SIGKILL: the export ends at once, in the middle of what it was doing."""


class KilledAt(FileOperations):
    """The operating system's file operations, until the ``step``-th (from 0) kills the writer."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.steps = 0

    def _killed_now(self) -> bool:
        now, self.steps = self.steps, self.steps + 1
        return now == self.step

    def open(self, path: Path, flags: int) -> int:
        if self._killed_now():
            raise Killed
        return super().open(path, flags)

    def write(self, fd: int, data: memoryview) -> int:
        if self._killed_now():
            super().write(fd, data[: len(data) // 2])  # killed in the middle of the write
            raise Killed
        return super().write(fd, data)

    def truncate(self, fd: int, size: int) -> None:
        if self._killed_now():
            raise Killed
        super().truncate(fd, size)

    def fsync(self, fd: int) -> None:
        if self._killed_now():
            raise Killed
        super().fsync(fd)


def _commit_missing(output: JournaledOutput) -> None:
    for (interaction_sid, channel_sid), data in CHANNELS.items():
        if (interaction_sid, channel_sid) not in output.finished:
            output.commit(interaction_sid, channel_sid, data)


def _export(out: Path, files: FileOperations, *, force: bool = False) -> None:
    with JournaledOutput.create(
        out, file_format="csv", header=HEADER, force=force, files=files
    ) as output:
        _commit_missing(output)


def _resume(out: Path, files: FileOperations = OS_FILES) -> None:
    with JournaledOutput.resume(out, file_format="csv", header=HEADER, files=files) as output:
        _commit_missing(output)


def fresh(out: Path, files: FileOperations) -> None:
    _export(out, files)


def over_a_finished_export(out: Path, files: FileOperations) -> None:
    _export(out, OS_FILES)
    _export(out, files, force=True)


def resuming_a_half_export(out: Path, files: FileOperations) -> None:
    with JournaledOutput.create(out, file_format="csv", header=HEADER, force=False) as output:
        output.commit("KDa", "UOa", CHANNELS["KDa", "UOa"])
    with out.open("ab") as torn:  # what a crash left of the next channel
        torn.write(b"c1\r")
    _resume(out, files)


def _assert_every_channel_exactly_once(out: Path) -> None:
    data = out.read_bytes()
    assert data.startswith(HEADER)
    rows = data[len(HEADER) :].splitlines(keepends=True)
    expected = [row for rows in CHANNELS.values() for row in rows.splitlines(keepends=True)]
    assert sorted(rows) == sorted(expected)
    journaled = journal_path(out).read_text().splitlines()[1:]
    assert {tuple(line.split(",")[:2]) for line in journaled} == set(CHANNELS)
    assert len(journaled) == len(CHANNELS)


def _kill_at_every_step(tmp_path: Path, scenario: Callable[[Path, int], None]) -> int:
    """Run ``scenario`` (an output, the step to kill it at) killed at step 0, 1, ... until
    it runs to its end; after each kill, resume and check the output. The number of steps."""
    for step in itertools.count():
        out = tmp_path / f"step-{step}" / "out.csv"
        out.parent.mkdir()
        try:
            scenario(out, step)
        except Killed:
            _resume(out)  # what is on disk is accepted: no UsageError
            _assert_every_channel_exactly_once(out)
            continue
        # A run past its last file operation: the export is whole without a resume.
        _assert_every_channel_exactly_once(out)
        return step
    raise AssertionError("unreachable")  # pragma: no cover


@pytest.mark.parametrize("scenario", [fresh, over_a_finished_export, resuming_a_half_export])
def test_a_kill_at_any_file_operation_leaves_files_that_resume_finishes(
    tmp_path: Path, scenario: Callable[[Path, FileOperations], None]
) -> None:
    steps = _kill_at_every_step(tmp_path, lambda out, step: scenario(out, KilledAt(step)))
    assert steps > 2 * len(CHANNELS)  # at least the two steps of every channel's commit


def test_a_resume_killed_at_any_file_operation_can_itself_be_resumed(tmp_path: Path) -> None:
    def killed_twice(out: Path, step: int) -> None:
        resuming_a_half_export(out, KilledAt(step))
        _resume(out, KilledAt(step))  # a second resume killed at the same step

    _kill_at_every_step(tmp_path, killed_twice)
