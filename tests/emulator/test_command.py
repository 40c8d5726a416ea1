"""`serve_until_stopped`, the one way the emulator's programs serve: what stops it; the
options they share (`add_emulator_arguments`); and ``python -m flex_participants.emulator`` and
``flex-participants emulator``, one program."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flex_participants import read_channel_list
from flex_participants.emulator import (
    DEFAULT_CHANNELS,
    MAX_CHANNELS,
    FlexEmulator,
    add_emulator_arguments,
)

# Serves a fresh emulator until its standard input ends, saying where it listens.
PROGRAM = (
    "from flex_participants.emulator import FlexEmulator, serve_until_stopped\n"
    "serve_until_stopped(FlexEmulator(), lambda e: print(e.base_url, flush=True),"
    " until_stdin_closes=True)\n"
)


async def test_the_end_of_standard_input_stops_the_emulator() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROGRAM,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    async with asyncio.timeout(30):
        base_url = (await process.stdout.readline()).decode().strip()
        assert base_url.startswith("http://127.0.0.1:")
        process.stdin.close()
        _, err = await process.communicate()

    assert process.returncode == 0, err.decode()


async def test_a_standard_input_with_no_end_to_wait_for_is_a_clear_error() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROGRAM,
        stdin=asyncio.subprocess.DEVNULL,  # a device: it cannot be waited on
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()

    assert process.returncode == 1
    assert out == b""  # it never said it was serving
    assert "until_stdin_closes needs standard input to be a pipe" in err.decode()


def test_the_emulator_options_refuse_more_channels_than_it_can_build(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser()
    add_emulator_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--channels", str(10**12)])
    assert (
        f"channels must be an integer from 0 to {MAX_CHANNELS}, got 10" in capsys.readouterr().err
    )


# -- one program, two names ---------------------------------------------------------------

MODULE = [sys.executable, "-m", "flex_participants.emulator"]
COMMAND = [sys.executable, "-m", "flex_participants", "emulator"]


async def served_output(program: list[str], *options: str) -> tuple[list[str], list[str]]:
    """What ``program OPTIONS`` prints once it serves, on stdout and on stderr, with its port
    written ``PORT``; it is then stopped with SIGINT, and must exit 0."""
    process = await asyncio.create_subprocess_exec(
        *program,
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert process.stdout is not None
    assert process.stderr is not None
    err: list[str] = []
    async with asyncio.timeout(30):
        while not err or err[-1] != "Press Ctrl-C to stop.":
            line = await process.stderr.readline()
            assert line, "\n".join(err)
            err.append(line.decode().rstrip("\n"))
        process.send_signal(signal.SIGINT)
        out, rest = await process.communicate()
    assert process.returncode == 0, rest.decode()
    [port] = set(re.findall(r"127\.0\.0\.1:(\d+)", "\n".join(err)))

    def unported(lines: list[str]) -> list[str]:
        return [line.replace(f"127.0.0.1:{port}", "127.0.0.1:PORT") for line in lines]

    return unported(out.decode().splitlines()), unported(err)


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--seed", "5", "--channels", "3", "--rate-limit", "20", "--max-in-flight", "4"],
        ["--api-key", "SK" + "1" * 32, "--api-secret", "s3cret", "--channels", "0"],
    ],
    ids=["defaults", "limits", "api-key"],
)
async def test_the_module_and_the_command_are_one_program(
    tmp_path: Path, options: list[str]
) -> None:
    lists = [tmp_path / "module.csv", tmp_path / "command.csv"]
    module = await served_output(MODULE, *options, "--channel-list", str(lists[0]))
    command = await served_output(COMMAND, *options, "--channel-list", str(lists[1]))

    assert module == tuple(
        [line.replace("command.csv", "module.csv") for line in lines] for lines in command
    )
    assert lists[0].read_text() == lists[1].read_text()


async def test_the_emulator_program_serves_channels_by_default_and_lists_them(
    tmp_path: Path,
) -> None:
    out, err = await served_output(MODULE)

    settings = dict(line.split("=", 1) for line in out)
    assert set(settings) == {"base_url", "account_sid", "auth_token", "channel_list"}
    assert err[0] == f"Flex emulator serving {DEFAULT_CHANNELS} channels (seed 0)"
    # The temporary list is removed on exit; the same list, asked for, is what it served.
    left = Path(settings["channel_list"])
    await served_output(MODULE, "--channel-list", str(tmp_path / "channels.csv"))
    assert_lists(left, tmp_path / "channels.csv")


def assert_lists(removed: Path, kept: Path) -> None:
    """``removed`` is gone, and ``kept`` holds the channels of a default emulator."""
    assert not removed.exists()
    assert list(read_channel_list(kept)) == FlexEmulator(channels=DEFAULT_CHANNELS).channels


def test_a_channel_list_it_cannot_write_fails_with_exit_1(tmp_path: Path) -> None:
    run = subprocess.run(  # noqa: S603 - our own module, our own arguments
        [*MODULE, "--channel-list", str(tmp_path / "missing" / "channels.csv")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 1
    assert "cannot write the channel list" in run.stderr
    assert run.stdout == ""
