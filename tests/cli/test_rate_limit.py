"""The rate budget on the command line: ``--rate-limit`` and ``--burst`` reach the client as
its ``rate_limit`` and ``burst``, bad values are usage errors, the progress bar's time left
counts the requests still to make at the limiter's rate, and the demo shows the limiter at work.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import flex_participants.cli._main as cli_main
from flex_participants import ClientStats, FlexClient
from flex_participants.cli._main import _parser, client_from_args, main
from flex_participants.cli._render import ExportProgress, pages_of, time_left
from flex_participants.emulator import FlexEmulator

from .helpers import (
    KD_UNKNOWN,
    UO_UNKNOWN,
    add_channels,
    assert_grouped_exactly_once,
    export_of,
    read_rows,
    run_cli,
)

COMMANDS = {
    "list": ["list", KD_UNKNOWN, UO_UNKNOWN],
    "export": ["export", "--channels", "channels.csv", "--out", "out.jsonl"],
}
"""Each command that builds a client, with the arguments it needs besides the options."""

CREDENTIALS = ["--account-sid", "AC" + "0" * 32, "--auth-token", "token"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser, _ = _parser()
    return parser.parse_args(argv)


class _RecordingClient:
    """Stands in for `FlexClient`: records what it was built with."""

    built: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).built = kwargs


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> type[_RecordingClient]:
    monkeypatch.setattr(cli_main, "FlexClient", _RecordingClient)
    return _RecordingClient


# -- what the client is given ------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("options", "rate_limit", "burst"),
    [
        ([], "adaptive", None),
        (["--rate-limit", "adaptive"], "adaptive", None),
        (["--rate-limit", "Adaptive"], "adaptive", None),
        (["--rate-limit", "off"], None, None),
        (["--rate-limit", "20"], 20.0, None),
        (["--rate-limit", "2.5"], 2.5, None),
        (["--rate-limit", "20", "--burst", "5"], 20.0, 5),
        (["--burst", "1", "--rate-limit", "0.5"], 0.5, 1),
    ],
    ids=["default", "adaptive", "any-case", "off", "20", "fraction", "burst", "burst-first"],
)
def test_rate_options_reach_the_client_as_its_rate_limit_and_burst(
    recorded: type[_RecordingClient],
    command: str,
    options: list[str],
    rate_limit: float | str | None,
    burst: int | None,
) -> None:
    client_from_args(parse([*COMMANDS[command], *CREDENTIALS, *options]))
    assert recorded.built["rate_limit"] == rate_limit
    assert type(recorded.built["rate_limit"]) is type(rate_limit)
    assert recorded.built["burst"] == burst


def test_a_told_budget_is_the_rate_and_burst_of_the_clients_limiter() -> None:
    args = parse([*COMMANDS["list"], *CREDENTIALS, "--rate-limit", "7.5", "--burst", "3"])
    client = client_from_args(args)
    assert isinstance(client, FlexClient)
    assert getattr(client.limiter, "rate", None) == 7.5
    assert getattr(client.limiter, "burst", None) == 3


def test_by_default_the_clients_limiter_starts_at_twilios_documented_rate() -> None:
    client = client_from_args(parse([*COMMANDS["list"], *CREDENTIALS]))
    assert getattr(client.limiter, "rate", None) == 20.0


def test_rate_limit_off_leaves_the_clients_limiter_without_a_rate() -> None:
    args = parse([*COMMANDS["list"], *CREDENTIALS, "--rate-limit", "off"])
    client = client_from_args(args)
    assert getattr(client.limiter, "rate", None) is None


async def test_an_export_under_a_told_budget_writes_every_channel(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    channels = add_channels(flex_emulator, [3, 0, 60, 1])
    export, out = export_of(tmp_path, channels)
    run = await run_cli(
        *export,
        "--rate-limit",
        "1000",
        "--burst",
        "2",
        emulator=flex_emulator,
    )
    assert run.code == 0, run
    assert_grouped_exactly_once(read_rows(out, "jsonl"), flex_emulator, channels)


# -- what is refused ---------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--rate-limit", "0"], "rate_limit must be a finite number of requests per second > 0"),
        (["--rate-limit", "-20"], "rate_limit must be a finite number of requests per second > 0"),
        (["--rate-limit", "nan"], "rate_limit must be a finite number of requests per second > 0"),
        (["--rate-limit", "inf"], "rate_limit must be a finite number of requests per second > 0"),
        (["--rate-limit", "fast"], "not a number of requests per second, 'adaptive' or 'off'"),
        (["--rate-limit", "20", "--burst", "0"], "burst must be an integer >= 1, got 0"),
        (["--rate-limit", "20", "--burst", "2.5"], "not an integer"),
        (["--burst", "5"], "--burst needs --rate-limit R"),
        (["--rate-limit", "adaptive", "--burst", "5"], "--burst needs --rate-limit R, a number"),
        (["--rate-limit", "off", "--burst", "5"], "--burst needs --rate-limit R, a number"),
    ],
    ids=[
        "zero",
        "negative",
        "nan",
        "infinite",
        "word",
        "burst-zero",
        "burst-fraction",
        "burst-alone",
        "burst-adaptive",
        "burst-off",
    ],
)
def test_a_bad_rate_option_is_one_argparse_line_and_exit_code_2(
    capsys: pytest.CaptureFixture[str], command: str, options: list[str], message: str
) -> None:
    code = main([*COMMANDS[command], *CREDENTIALS, *options])
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"flex-participants {command}: error: ")
    assert message in err
    assert err.rstrip().endswith("(see --help)")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_says_what_each_rate_option_does(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert main([command, "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--rate-limit R|adaptive|off" in help_text
    assert "adaptive (the default) starts at 20" in help_text
    assert "off sends as fast as --max-concurrency allows" in help_text
    assert "--burst N with --rate-limit R: how many requests may start at once" in help_text


def test_the_emulator_command_takes_the_limits_it_enforces() -> None:
    args = parse(["emulator", "--rate-limit", "20", "--burst", "5", "--concurrency-code", "45780"])
    assert (args.rate_limit, args.burst, args.concurrency_code) == (20.0, 5, 45780)


@pytest.mark.parametrize(
    "options",
    [["--rate-limit", "0"], ["--rate-limit", "adaptive"], ["--burst", "5"]],
    ids=["zero", "a-word", "burst-alone"],
)
def test_a_bad_emulator_limit_is_exit_code_2(
    capsys: pytest.CaptureFixture[str], options: list[str]
) -> None:
    assert main(["emulator", *options]) == 2
    assert capsys.readouterr().err.startswith("flex-participants emulator: error: ")


# -- the time left -----------------------------------------------------------------------


def test_without_a_rate_the_time_left_is_the_estimate() -> None:
    assert time_left(12.0, 100, None) == 12.0
    assert time_left(None, 100, None) is None


def test_with_a_rate_and_no_estimate_yet_the_time_left_is_the_requests_at_that_rate() -> None:
    assert time_left(None, 100, 20.0) == 5.0


def test_the_time_left_is_never_less_than_the_requests_still_to_make_at_the_rate() -> None:
    assert time_left(2.0, 100, 20.0) == 5.0


def test_an_estimate_slower_than_the_rate_is_kept() -> None:
    assert time_left(9.0, 100, 20.0) == 9.0


def test_channels_of_several_pages_take_a_request_per_page() -> None:
    assert time_left(None, 100, 20.0, pages_per_channel=2.5) == 12.5


def test_every_channel_left_takes_at_least_one_request() -> None:
    assert time_left(None, 100, 20.0, pages_per_channel=0.0) == 5.0


def test_with_nothing_left_the_time_left_is_the_estimate() -> None:
    assert time_left(0.0, 0, 20.0) == 0.0


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan"), float("inf")])
def test_a_rate_that_is_no_rate_is_ignored(rate: float) -> None:
    assert time_left(3.0, 100, rate) == 3.0


@pytest.mark.parametrize(
    ("participants", "page_size", "pages"),
    [(0, 50, 1), (1, 50, 1), (50, 50, 1), (51, 50, 2), (130, 50, 3), (1000, 1000, 1)],
)
def test_a_channel_takes_a_request_per_page_and_at_least_one(
    participants: int, page_size: int, pages: int
) -> None:
    assert pages_of(participants, page_size) == pages


class _Client:
    """What the progress bar reads of a client: `FlexClient.stats`."""

    def __init__(self, rate: float | None, throttled: int = 0) -> None:
        self.rate = rate
        self.throttled = throttled

    def stats(self) -> ClientStats:
        return ClientStats(
            requests=0,
            retries=0,
            throttled=self.throttled,
            in_flight=0,
            level=None,
            rate=self.rate,
        )


def _drawn(
    rate: float | None, finished: list[int], total: int, page_size: int = 50, throttled: int = 0
) -> str:
    """The progress bar as drawn once ``finished`` channels (participants each) are done."""
    out = io.StringIO()
    # A clock that stands still: rich's own estimate, from the pace so far, stays unknown.
    console = Console(
        file=out, width=200, force_terminal=False, color_system=None, get_time=lambda: 0.0
    )
    client: Any = _Client(rate, throttled)
    with ExportProgress(console, client, page_size=page_size) as progress:
        progress.started(total)
        for participants in finished:
            progress.finished(participants, failed=False)
    return out.getvalue()


def test_the_bar_shows_the_time_the_channels_left_take_at_the_limiters_rate() -> None:
    assert "0/100 channels 0:00:05 " in _drawn(20.0, [], 100)


def test_the_bar_counts_the_pages_the_channels_done_took() -> None:
    # Two channels of 3 pages each at a page size of 10: 3 requests for each of the 98 left.
    assert "2/100 channels 0:00:15 " in _drawn(19.6, [21, 30], 100, page_size=10)


def test_without_a_rate_the_bar_has_no_time_left_before_any_progress() -> None:
    assert "0/100 channels -:--:-- " in _drawn(None, [], 100)


# -- the demo ----------------------------------------------------------------------------


async def test_the_demo_runs_under_a_budget_and_reports_its_429s_and_settled_rate(
    tmp_path: Path,
) -> None:
    out = tmp_path / "demo.jsonl"
    run = await run_cli("demo", "--channels", "5", "--out", str(out), emulator=None)
    assert run.code == 0, run
    assert "every participant exactly once" in run.stderr
    assert "a budget of" in run.stderr
    lines = run.stderr.splitlines()
    assert any(line.startswith("│ requests answered 429 (budget)") for line in lines), run.stderr
    assert any(line.startswith("│ rate the client settled on") for line in lines), run.stderr


def test_the_bar_shows_how_many_requests_were_answered_429() -> None:
    assert "3 x 429" in _drawn(20.0, [], 10, throttled=3)
    assert "429" not in _drawn(20.0, [], 10)
