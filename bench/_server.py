"""``python -m bench._server``: one emulator with the channels a scenario needs, in a process of
its own, so that serving does not share the client's CPU.

The emulator's command line seeds channels of random sizes only; a scenario needs channels of
given sizes, so this adds them with `FlexEmulator.add_channel`, in the order given. Otherwise it
is that command line: the same options (`add_emulator_arguments`, ``--latency`` in
milliseconds) and the same way of serving (`serve_until_stopped`). The same seed and the same
``--group`` arguments give the same SIDs, which is how the harness knows what every system
should return.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from flex_participants.emulator import (
    FlexEmulator,
    add_emulator_arguments,
    emulator_from_arguments,
    serve_until_stopped,
)

__all__ = ["build", "main", "parse_group"]


def parse_group(text: str) -> tuple[int, list[int]]:
    """``"200x150"``: 200 channels of 150 participants; ``"20000x0-9"``: sizes cycling 0..9."""
    count, _, sizes = text.partition("x")
    low, _, high = sizes.partition("-")
    first = int(low)
    last = int(high) if high else first
    return int(count), list(range(first, last + 1))


def build(
    seed: int,
    groups: Sequence[str],
    *,
    latency: float = 0.0,
    max_in_flight: int | None = None,
    rate_limit: float | None = None,
    burst: int | None = None,
    log_limit: int = 0,
) -> FlexEmulator:
    """An emulator (not started) with the channels of ``groups`` added in order.

    ``rate_limit`` and ``burst``: the emulator's token bucket; ``None``, none. ``log_limit``:
    requests kept in its log; none by default, since at a million requests the log would
    cost the emulator time and memory.
    """
    budget: dict[str, Any] = {}
    if rate_limit is not None:
        budget = {"rate_limit": rate_limit, "burst": burst}
    emulator = FlexEmulator(
        seed=seed, latency=latency, max_in_flight=max_in_flight, log_limit=log_limit, **budget
    )
    _add_groups(emulator, groups)
    return emulator


def _add_groups(emulator: FlexEmulator, groups: Sequence[str]) -> None:
    """Add the channels of ``groups`` to ``emulator``, in order."""
    for group in groups:
        count, sizes = parse_group(group)
        for n in range(count):
            emulator.add_channel(participants=sizes[n % len(sizes)])


def _print_base_url(emulator: FlexEmulator) -> None:
    # One JSON line: what the harness reads to find the server.
    print(json.dumps({"base_url": emulator.base_url}), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM, SIGINT or the end of standard input (the harness closes it to
    stop the server, should it die without a signal)."""
    parser = argparse.ArgumentParser(prog="python -m bench._server")
    add_emulator_arguments(parser)
    parser.add_argument(
        "--group", dest="groups", action="append", default=[], help="COUNTxSIZE[-SIZE]"
    )
    parser.add_argument("--log-limit", type=int, default=0, help="requests kept in the log")
    args = parser.parse_args(argv)
    try:
        emulator = emulator_from_arguments(args, log_limit=args.log_limit)
    except ValueError as exc:
        parser.error(str(exc))
    _add_groups(emulator, args.groups)
    serve_until_stopped(emulator, _print_base_url, until_stdin_closes=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
