"""The channel list: `read_channel_list` reads what `write_channel_list` writes, and what the
CLI reads; every SID is checked as its line is read."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flex_participants import (
    ChannelListError,
    ChannelListParser,
    InvalidArgumentError,
    read_channel_list,
    write_channel_list,
)

from .helpers import sid

CHANNELS = [(sid("KD", n), sid("UO", n)) for n in range(3)]

_hex = st.text(alphabet="0123456789abcdefABCDEF", min_size=32, max_size=32)
_channels = st.lists(st.tuples(_hex.map("KD".__add__), _hex.map("UO".__add__)), max_size=20)


@given(_channels)
def test_what_is_written_reads_back_the_same(channels: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "channels.csv"
        assert write_channel_list(path, channels) == len(channels)
        assert list(read_channel_list(path)) == channels


def test_a_written_file_reads_back_with_its_header_skipped(tmp_path: Path) -> None:
    path = tmp_path / "channels.csv"
    assert write_channel_list(path, CHANNELS) == 3
    assert path.read_text().splitlines()[0] == "interaction_sid,channel_sid"
    assert list(read_channel_list(path)) == CHANNELS


def test_json_lines_comments_and_blank_lines_are_read_too() -> None:
    (kd, uo), (kd2, uo2) = CHANNELS[:2]
    lines = ["# made by hand\n", "\n", f'{{"channel_sid": "{uo}", "interaction_sid": "{kd}"}}\n']
    lines.append(f'{{"interaction_sid": "{kd2}", "channel_sid": "{uo2}", "note": 1}}\n')
    assert list(read_channel_list(lines)) == CHANNELS[:2]


def test_a_malformed_sid_names_its_line_after_the_channels_before_it(tmp_path: Path) -> None:
    path = tmp_path / "channels.csv"
    path.write_text(
        f"{CHANNELS[0][0]},{CHANNELS[0][1]}\nKD1,UO1\n{CHANNELS[1][0]},{CHANNELS[1][1]}\n"
    )
    read = read_channel_list(path)
    assert next(read) == CHANNELS[0]
    with pytest.raises(
        ChannelListError, match=rf"^{path} line 2 is not a channel: interaction_sid"
    ):
        next(read)


def test_a_channel_list_error_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgumentError):
        list(read_channel_list(["KD1,UO1\n"], name="jobs"))


def test_the_list_is_read_only_as_fast_as_its_channels_are_taken() -> None:
    taken: list[str] = []

    def lines() -> Iterator[str]:
        for kd, uo in CHANNELS:
            taken.append(kd)
            yield f"{kd},{uo}\n"

    read = read_channel_list(lines())
    assert next(read) == CHANNELS[0]
    assert taken == [CHANNELS[0][0]]


def test_a_line_over_the_limit_is_refused_without_being_kept(tmp_path: Path) -> None:
    path = tmp_path / "channels.csv"
    path.write_bytes(b"x" * (ChannelListParser.MAX_LINE * 3) + b"\n")
    with pytest.raises(ChannelListError, match="line 1 is longer than"):
        list(read_channel_list(path))


def test_the_parser_takes_text_and_bytes_alike() -> None:
    parser = ChannelListParser("stdin")
    kd, uo = CHANNELS[0]
    assert parser.parse(f"{kd},{uo}\n") == (kd, uo)
    assert parser.parse(f"{kd} , {uo}\r\n".encode()) == (kd, uo)
    assert parser.number == 2
