"""One export per output: a second export of the same ``--out`` refuses at once and touches
nothing; the lock goes with the process that holds it, however it ends.

The export that holds the lock is kept waiting, without any timing, on a named FIFO as its
channel list: it takes the lock before it opens the list, and the list has no writer until
the test gives it one.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from flex_participants.cli._journal import journal_path, lock_path
from flex_participants.emulator import FlexEmulator

from .helpers import (
    add_channels,
    assert_grouped_exactly_once,
    assert_one_line_error,
    finish,
    read_rows,
    run_cli,
    start_cli,
    write_channel_csv,
)


async def holding_the_lock(
    flex_emulator: FlexEmulator, fifo: Path, out: Path, *options: str
) -> asyncio.subprocess.Process:
    """An export of ``out`` that has taken its lock and waits for the writer of ``fifo``."""
    os.mkfifo(fifo)
    process = await start_cli(
        "export", "--channels", str(fifo), "--out", str(out), *options, emulator=flex_emulator
    )
    async with asyncio.timeout(30):
        # The holder writes its pid into the lock file once it holds the lock.
        while not (lock_path(out).exists() and lock_path(out).read_text().strip()):
            assert process.returncode is None
            await asyncio.sleep(0.01)
    assert lock_path(out).read_text().strip() == str(process.pid)
    return process


async def feed(fifo: Path, channels: list[tuple[str, str]]) -> None:
    """Be the writer of ``fifo`` (in a thread: opening it waits for its reader)."""
    await asyncio.to_thread(fifo.write_text, "".join(f"{kd},{uo}\n" for kd, uo in channels))


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


@pytest.mark.parametrize(
    "options", [(), ("--resume",), ("--force",)], ids=["plain", "resume", "force"]
)
async def test_a_second_export_of_the_same_output_refuses_at_once_and_touches_nothing(
    flex_emulator: FlexEmulator, tmp_path: Path, options: tuple[str, ...]
) -> None:
    before = add_channels(flex_emulator, [3, 4])
    channels = write_channel_csv(tmp_path / "channels.csv", before)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out.jsonl"
    first = await run_cli(
        "export", "--channels", str(channels), "--out", str(out), emulator=flex_emulator
    )
    assert first.code == 0, first
    holder = await holding_the_lock(flex_emulator, tmp_path / "fifo", out, "--resume")
    files = snapshot(work)

    # The same output by another name: through a symbolic link to its directory.
    (tmp_path / "link").symlink_to(work)
    second = await run_cli(
        "export",
        "--channels",
        str(channels),
        "--out",
        str(tmp_path / "link" / "out.jsonl"),
        *options,
        emulator=flex_emulator,
    )
    assert_one_line_error(
        second, 75, "another export", f"(pid {holder.pid})", "nothing was touched"
    )
    assert snapshot(work) == files

    more = add_channels(flex_emulator, [5])
    await feed(tmp_path / "fifo", before + more)
    done = await finish(holder)
    assert done.code == 0, done
    assert_grouped_exactly_once(read_rows(out, "jsonl"), flex_emulator, before + more)
    assert not lock_path(out).exists()


async def test_of_two_exports_started_together_one_writes_and_the_other_refuses(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    channels = add_channels(flex_emulator, [2, 60, 7])
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out.jsonl"
    both = [
        await start_cli(
            "export", "--channels", str(fifo), "--out", str(out), emulator=flex_emulator
        )
        for _ in range(2)
    ]
    # Whichever lost the race for the lock ends at once, without opening the FIFO.
    await asyncio.wait(
        [asyncio.ensure_future(process.wait()) for process in both],
        return_when=asyncio.FIRST_COMPLETED,
        timeout=30,
    )
    [loser] = [process for process in both if process.returncode is not None]
    [winner] = [process for process in both if process is not loser]
    assert_one_line_error(await finish(loser), 75, "another export")
    await feed(fifo, channels)
    written = await finish(winner)
    assert written.code == 0, written
    assert_grouped_exactly_once(read_rows(out, "jsonl"), flex_emulator, channels)


async def test_the_lock_of_a_killed_export_is_released_and_resume_finishes(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    channels = add_channels(flex_emulator, [3, 1, 4])
    out = tmp_path / "out.jsonl"
    holder = await holding_the_lock(flex_emulator, tmp_path / "fifo", out)
    holder.kill()
    assert await holder.wait() == -signal.SIGKILL
    assert lock_path(out).exists()  # left behind by the crash, but no longer locked

    source = write_channel_csv(tmp_path / "channels.csv", channels)
    run = await run_cli(
        "export", "--channels", str(source), "--out", str(out), "--resume", emulator=flex_emulator
    )
    assert run.code == 0, run
    assert_grouped_exactly_once(read_rows(out, "jsonl"), flex_emulator, channels)
    assert journal_path(out).exists()
    assert not lock_path(out).exists()
