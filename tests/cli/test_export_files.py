"""The files around an export's output cannot be turned against it: the output, its journal
and its lock are regular files, opened without following a link or waiting for a FIFO, and
anything else at one of those paths is a usage error naming it, before any request."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from flex_participants.cli._journal import journal_path, lock_path
from flex_participants.emulator import FlexEmulator

from .helpers import Run, add_channels, assert_one_line_error, export_of, run_cli

OPTIONS = pytest.mark.parametrize(
    "options", [(), ("--resume",), ("--force",)], ids=["plain", "resume", "force"]
)
# Where a hostile neighbour can put something: the lock, the journal, the output itself.
PLACES: dict[str, Callable[[Path], Path]] = {
    "lock": lock_path,
    "journal": journal_path,
    "output": lambda out: out,
}
PLACE = pytest.mark.parametrize("place", list(PLACES))


def _assert_refused_before_any_request(
    run: Run, emulator: FlexEmulator, path: Path, kind: str
) -> None:
    assert_one_line_error(run, 2, str(path), f"is {kind}")
    assert emulator.stats.requests == 0


async def _export_over_a_link_to_a_precious_file(
    emulator: FlexEmulator,
    tmp_path: Path,
    place: str,
    options: tuple[str, ...],
    link: Callable[[Path, Path], None],
) -> tuple[Run, Path, Path]:
    """Link ``place`` of an export to a precious file, then run the export with ``options``:
    how it ended, the link and the precious file."""
    export, out = export_of(tmp_path, add_channels(emulator, [2]))
    victim = tmp_path / "precious.txt"
    victim.write_text("precious\n")
    linked = PLACES[place](out)
    link(victim, linked)
    if options and place != "output":  # an output to resume or overwrite
        out.write_bytes(b"")
    return await run_cli(*export, *options, emulator=emulator), linked, victim


@OPTIONS
@pytest.mark.parametrize("place", ["lock", "journal"])
async def test_a_symlink_at_the_lock_or_journal_is_refused_and_its_target_left_whole(
    emulator: FlexEmulator, tmp_path: Path, place: str, options: tuple[str, ...]
) -> None:
    run, link, victim = await _export_over_a_link_to_a_precious_file(
        emulator, tmp_path, place, options, lambda target, link: link.symlink_to(target)
    )
    _assert_refused_before_any_request(run, emulator, link, "a symbolic link")
    assert victim.read_text() == "precious\n"
    assert link.is_symlink()


@OPTIONS
@PLACE
async def test_a_hard_link_at_the_output_journal_or_lock_is_refused_and_its_file_left_whole(
    emulator: FlexEmulator, tmp_path: Path, place: str, options: tuple[str, ...]
) -> None:
    # Written in place, the file would change under both names.
    run, link, victim = await _export_over_a_link_to_a_precious_file(
        emulator, tmp_path, place, options, os.link
    )
    _assert_refused_before_any_request(run, emulator, link, "a file with 1 other hard link")
    assert victim.read_text() == "precious\n"


@OPTIONS
@PLACE
async def test_a_fifo_at_the_output_journal_or_lock_is_refused_at_once(
    emulator: FlexEmulator, tmp_path: Path, place: str, options: tuple[str, ...]
) -> None:
    export, out = export_of(tmp_path, add_channels(emulator, [2]))
    fifo = PLACES[place](out)
    os.mkfifo(fifo)
    if options and place != "output":
        out.write_bytes(b"")
    # Opened as a file, the FIFO would wait for a reader forever, holding the lock.
    run = await run_cli(*export, *options, emulator=emulator)
    _assert_refused_before_any_request(run, emulator, fifo, "a FIFO")


@PLACE
async def test_a_directory_at_the_output_journal_or_lock_is_refused(
    emulator: FlexEmulator, tmp_path: Path, place: str
) -> None:
    export, out = export_of(tmp_path, add_channels(emulator, [2]))
    directory = PLACES[place](out)
    directory.mkdir()
    run = await run_cli(*export, "--force", emulator=emulator)
    _assert_refused_before_any_request(run, emulator, directory, "a directory")
    assert directory.is_dir()


async def test_a_dangling_symlink_at_the_journal_creates_nothing_where_it_points(
    emulator: FlexEmulator, tmp_path: Path
) -> None:
    export, out = export_of(tmp_path, add_channels(emulator, [2]))
    target = tmp_path / "created-through-the-link"
    journal_path(out).symlink_to(target)
    run = await run_cli(*export, "--resume", emulator=emulator)
    _assert_refused_before_any_request(run, emulator, journal_path(out), "a symbolic link")
    assert not target.exists()
