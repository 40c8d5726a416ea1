"""`serve_until_stopped`, the one way the emulator's programs serve: what stops it; and the
options they share (`add_emulator_arguments`)."""

from __future__ import annotations

import argparse
import asyncio
import sys

import pytest

from flex_participants.emulator import MAX_CHANNELS, add_emulator_arguments

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
