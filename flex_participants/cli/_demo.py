"""``flex-participants demo``: an export of a few dozen channels from an embedded emulator.

The emulator serves a seeded dataset with some latency, under a rate budget that the client
is not told (`BUDGET`, half of Twilio's documented one), and with a few planned faults (503s,
a connection reset, a cut-off body), so that the limiter and the retries show; a few
channels it does not know are added to the input, and fail with 404. The export runs
exactly as ``flex-participants export`` does, with the client's default adaptive rate, then
the output is checked against the emulator's data, and the summary says how many requests
the budget refused and the rate the client settled on.

At the budget, every request costs a tenth of a second: the demo's default size keeps it to
a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import attrs
from rich.console import Console

from flex_participants import FlexClient, NotFoundError, write_channel_list
from flex_participants.emulator import Fault, FlexEmulator

from ._export import ExportReport, export_file, locked_source, output_path
from ._render import ExportProgress, FileFormat, print_report, stderr_console

__all__ = ["run_demo"]

UNKNOWN_CHANNELS: Final = 3
"""How many channels the emulator does not know are added to the demo's input."""
LATENCY: Final = 0.015
"""Seconds the emulator adds to every request."""
BUDGET: Final = 10.0
"""Requests per second the emulator allows: half of Twilio's documented 20, as when another
application shares the account's budget. The client is not told: it starts at 20, meets 429s
and slows down, as an export against such an account does."""
_FAULTS: Final = (
    (Fault("status", status=503, times=2), "2 x HTTP 503"),
    (Fault("reset"), "a connection reset"),
    (Fault("truncated"), "a cut-off body"),
)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo as ``args`` describe; 0 if the only failures are the unknown channels.

    Everything it prints is for a person, so it goes to stderr.
    """
    return asyncio.run(_demo(args))


async def _demo(args: argparse.Namespace) -> int:
    console = stderr_console()
    emulator = FlexEmulator(
        seed=args.seed, channels=args.channels, latency=LATENCY, rate_limit=BUDGET
    )
    for fault, _ in _FAULTS:
        emulator.add_fault(fault)
    # Not seeded with the bare seed, which would draw the emulator's own first SIDs.
    rng = random.Random(f"unknown channels {args.seed}")  # noqa: S311 - demo data, not secrets
    channels = emulator.channels
    unknown: set[tuple[str, str]] = set()
    while len(unknown) < UNKNOWN_CHANNELS:
        channel = (_sid("KD", rng), _sid("UO", rng))
        if channel not in channels:
            unknown.add(channel)
    for channel in sorted(unknown):
        channels.insert(rng.randrange(len(channels) + 1), channel)
    with tempfile.TemporaryDirectory(prefix="flex-participants-demo-") as scratch:
        channel_list = Path(scratch) / "channels.csv"
        write_channel_list(channel_list, channels)
        out = output_path(args.out) if args.out else Path(scratch) / f"participants.{args.format}"
        async with emulator:
            console.print(
                f"[bold]demo[/]: {len(channels) - len(unknown)} channels (seed {args.seed}) "
                f"and {len(unknown)} unknown ones, from an emulator at {emulator.base_url} "
                f"with {LATENCY * 1000:.0f} ms latency, a budget of {BUDGET:g} requests/s "
                f"(burst {emulator.burst}) that the client is not told, and these faults: "
                + ", ".join(description for _, description in _FAULTS),
                highlight=False,
            )
            client = FlexClient(**emulator.client_kwargs(), max_concurrency=args.max_concurrency)
            report = ExportReport(out, args.format)
            async with client:
                with (
                    locked_source(str(channel_list), out) as source,
                    ExportProgress(console, client, "demo", page_size=args.page_size) as progress,
                ):
                    await export_file(
                        client, source, report, progress, force=args.force, page_size=args.page_size
                    )
            expected = Counter(
                participant["sid"]
                for channel in emulator.channels
                for participant in emulator.participants_of(*channel)
            )
            verified = Counter(_written_sids(out, args.format)) == expected
            observed = _Observed(
                faults_fired=emulator.stats.faults_fired,
                throttled=emulator.stats.rate_throttled,
                settled_rate=getattr(client.limiter, "rate", None),
            )
        return _summarize(console, report, unknown, verified, observed, kept=args.out is not None)


@attrs.frozen
class _Observed:
    """What the emulator and the client's limiter saw of the export."""

    faults_fired: int
    throttled: int
    """Requests the emulator answered 429 because the budget had no token for them."""
    settled_rate: float | None
    """The rate of the client's limiter at the end, in requests per second."""


def _summarize(
    console: Console,
    report: ExportReport,
    unknown: set[tuple[str, str]],
    verified: bool,
    observed: _Observed,
    *,
    kept: bool,
) -> int:
    failed = {(f.interaction_sid, f.channel_sid) for f in report.failures}
    only_unknown = failed == unknown and all(
        isinstance(f.error, NotFoundError) for f in report.failures
    )
    check = "every participant exactly once" if verified else "[red]MISMATCH[/]"
    settled = "none" if observed.settled_rate is None else f"{observed.settled_rate:.1f} requests/s"
    extra = [
        ("faults fired by the emulator", f"{observed.faults_fired:,}"),
        ("requests answered 429 (budget)", f"{observed.throttled:,}"),
        ("rate the client settled on", f"{settled} (budget {BUDGET:g})"),
        ("output checked against the emulator", check),
    ]
    print_report(console, report, "demo", extra, resumable=False, output_kept=kept)
    if only_unknown and verified and not report.unreported:
        console.print(
            f"[green]OK[/]: the {len(failed)} failed channels are the ones deliberately "
            "unknown to the emulator (404); every retried fault and 429 was recovered from.",
            highlight=False,
        )
        return 0
    console.print("[red]FAILED[/]: unexpected failures or output; see above.", highlight=False)
    return 1


def _sid(prefix: str, rng: random.Random) -> str:
    return f"{prefix}{rng.getrandbits(128):032x}"


def _written_sids(out: Path, file_format: FileFormat) -> Iterator[str]:
    with open(out, encoding="utf-8", newline="") as file:
        if file_format == "csv":
            for row in csv.DictReader(file):
                yield row["sid"]
        else:
            for line in file:
                yield json.loads(line)["sid"]
