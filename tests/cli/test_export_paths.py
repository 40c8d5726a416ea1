"""What an export reads and writes is decided once: the channel list is read once, the output
is named by one path, and neither can be the other; a closed stdin is not an empty list."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from flex_participants.cli._channels import ChannelSource
from flex_participants.cli._journal import journal_path
from flex_participants.emulator import Fault, FlexEmulator

from ..helpers import sid
from .helpers import (
    Run,
    add_channels,
    assert_grouped_exactly_once,
    assert_one_line_error,
    cli_command,
    environment,
    finish,
    read_rows,
    run_cli,
    write_channel_csv,
)


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[FlexEmulator]:
    async with FlexEmulator(seed=12) as running:
        yield running


async def test_a_channel_list_that_is_the_output_is_refused_and_left_whole(
    emulator: FlexEmulator, tmp_path: Path
) -> None:
    channels = add_channels(emulator, [3, 4])
    listed = write_channel_csv(tmp_path / "same.csv", channels)
    before = listed.read_bytes()
    run = await run_cli(
        "export", "--channels", str(listed), "--out", str(listed), "--format", "csv",
        "--force", emulator=emulator,
    )  # fmt: skip
    assert_one_line_error(run, 2, "which the export writes")
    assert listed.read_bytes() == before


async def _export_reading_stdin_from(
    emulator: FlexEmulator, listed: Path, out: Path, *options: str
) -> Run:
    with listed.open("rb") as stdin:  # `< listed`
        process = await asyncio.create_subprocess_exec(
            *cli_command(), "export", "--channels", "-", "--out", str(out), *options,
            stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=environment(emulator),
        )  # fmt: skip
        return await finish(process)


async def test_stdin_redirected_from_the_output_is_refused_and_the_output_left_whole(
    emulator: FlexEmulator, tmp_path: Path
) -> None:
    out = write_channel_csv(tmp_path / "out.csv", add_channels(emulator, [3, 4]))
    before = out.read_bytes()
    run = await _export_reading_stdin_from(emulator, out, out, "--format", "csv", "--force")
    assert_one_line_error(run, 2, "the channel list stdin is", "which the export writes")
    assert out.read_bytes() == before
    assert emulator.stats.requests == 0


async def test_stdin_from_a_hard_link_of_the_journal_is_refused_and_the_journal_left_whole(
    emulator: FlexEmulator, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    channels = add_channels(emulator, [3])
    journal = write_channel_csv(journal_path(out), channels)  # a list saved in the wrong place
    before = journal.read_bytes()
    linked = tmp_path / "channels.csv"
    os.link(journal, linked)
    run = await _export_reading_stdin_from(emulator, linked, out, "--force")
    assert_one_line_error(run, 2, f"is {journal}", "which the export writes")
    assert journal.read_bytes() == before


async def test_a_file_list_rewritten_after_it_was_checked_still_gives_what_was_checked(
    tmp_path: Path,
) -> None:
    # Read once: what the export fetches is what it checked and counted, even if the file is
    # regenerated in place (a cron job's `make-list > channels.csv`) before it is read again.
    channels = [(sid("KD", n), sid("UO", n)) for n in range(6)]
    listed = write_channel_csv(tmp_path / "channels.csv", channels)
    with ChannelSource.open(str(listed)) as source:
        assert source.count() == 6
        write_channel_csv(listed, channels[:1])
        read = [channel async for channel in source.channels()]
    assert read == channels


async def test_an_export_through_a_symlink_journals_next_to_the_real_output(
    emulator: FlexEmulator, tmp_path: Path
) -> None:
    channels = add_channels(emulator, [3, 2])
    listed = write_channel_csv(tmp_path / "channels.csv", channels)
    real = tmp_path / "real.jsonl"
    real.touch()
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    run = await run_cli(
        "export", "--channels", str(listed), "--out", str(link), "--force", emulator=emulator
    )
    assert run.code == 0, run
    assert journal_path(real).exists()
    assert not journal_path(link).exists()
    resumed = await run_cli(
        "export", "--channels", str(listed), "--out", str(real), "--resume", emulator=emulator
    )
    assert resumed.code == 0, resumed
    assert_grouped_exactly_once(read_rows(real, "jsonl"), emulator, channels)


async def test_a_closed_stdin_is_no_channel_list(emulator: FlexEmulator, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    # `<&-`: the export runs with fd 0 closed.
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", 'exec "$0" "$@" <&-', *cli_command(), "export", "--channels", "-",
        "--out", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=environment(emulator),
    )  # fmt: skip
    async with asyncio.timeout(60):
        _, err = await process.communicate()
    assert process.returncode == 2, err
    assert b"stdin, which is closed" in err
    assert not out.exists()


async def test_a_line_break_in_a_server_message_cannot_forge_a_line_of_ours(
    emulator: FlexEmulator,
) -> None:
    ((kd, uo),) = add_channels(emulator, [3])
    body = {"code": 20404, "status": 404, "more_info": "x", "message": "nope\nforged: all OK"}
    emulator.add_fault(Fault("body", status=404, body=json.dumps(body).encode(), channel_sid=uo))
    run = await run_cli("list", kd, uo, emulator=emulator)
    assert_one_line_error(run, 1, "NotFoundError", "nope")
    assert "\nforged" not in run.stderr
