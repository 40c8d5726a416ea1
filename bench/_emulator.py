"""The harness's side of the emulator: start it in a process of its own, read and reset its
counters, and know what it serves (the SIDs every system must return)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import attrs

from flex_participants.emulator import FlexEmulator

from ._server import build
from ._spawner import Closing, stop_process

__all__ = ["EmulatorProcess", "ServerStats", "expected_sids"]

ROOT = Path(__file__).resolve().parent.parent


@attrs.frozen
class ServerStats:
    """The emulator's counters over one timed run."""

    requests: int
    service_time: float
    peak_in_flight: int
    throttled: int
    """429s for a limit: the rate's and the concurrency's."""
    rate_throttled: int = 0
    """429s for the rate, the token bucket having no token."""
    first_started: float | None = None
    """When the first request arrived (the emulator's clock)."""
    last_finished: float | None = None
    """When the last answer had been written."""

    @property
    def per_request(self) -> float:
        """S: the measured service time of one request, in seconds."""
        return self.service_time / self.requests if self.requests else 0.0

    @property
    def span(self) -> float | None:
        """The server's span: seconds from the first request to the last answer, whoever
        sent them."""
        if self.first_started is None or self.last_finished is None:
            return None
        return self.last_finished - self.first_started

    @property
    def throttled_share(self) -> float:
        """The share of requests answered 429 for a limit."""
        return self.throttled / self.requests if self.requests else 0.0


class EmulatorProcess(Closing):
    """``python -m bench._server`` with a seed, a latency and channel groups, for one scenario.

    ``rate_limit`` and ``burst`` give it a token bucket, whose rate follows ``rate_schedule``
    from the first request after each reset. It keeps no request log: its counters give the
    span of a run, and at a million requests a log would cost it time and memory.
    """

    def __init__(
        self,
        *,
        seed: int,
        groups: Sequence[str],
        latency: float = 0.0,
        rate_limit: float | None = None,
        burst: int | None = None,
        rate_schedule: Sequence[tuple[float, float]] = (),
    ) -> None:
        self.seed = seed
        self.groups = list(groups)
        self.latency = latency
        self.rate_limit = rate_limit
        self.burst = burst
        self.rate_schedule = tuple(rate_schedule)
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""
        # The same seed and groups, never started: the SIDs the server will serve.
        self.mirror = build(seed, groups, latency=latency)
        self.channels = self.mirror.channels

    def __enter__(self) -> Self:
        command = [sys.executable, "-m", "bench._server", "--seed", str(self.seed)]
        command += ["--latency", repr(self.latency * 1000)]  # milliseconds
        if self.rate_limit is not None:
            command += ["--rate-limit", repr(self.rate_limit)]
        if self.burst is not None:
            command += ["--burst", str(self.burst)]
        if self.rate_schedule:
            steps = ",".join(f"{seconds!r}:{rate!r}" for seconds, rate in self.rate_schedule)
            command += ["--rate-schedule", steps]
        for group in self.groups:
            command += ["--group", group]
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"the emulator did not start: {' '.join(command)}")
        self.base_url = json.loads(line)["base_url"]
        return self

    def close(self) -> None:
        """Stop the process and clean up after it; a second call does nothing."""
        process, self._process = self._process, None
        if process is None:
            return
        stop_process(process)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()

    def _call(self, method: str, path: str) -> bytes:
        request = urllib.request.Request(self.base_url + path, method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            body: bytes = response.read()
            return body

    def reset(self) -> None:
        """Zero the counters (``POST /__emulator__/reset``)."""
        self._call("POST", "/__emulator__/reset")

    def stats(self) -> ServerStats:
        """The counters since the last reset (``GET /__emulator__/stats``)."""
        data: dict[str, Any] = json.loads(self._call("GET", "/__emulator__/stats?log=0"))
        return ServerStats(
            requests=data["requests"],
            service_time=data["service_time"],
            peak_in_flight=data["peak_in_flight"],
            throttled=data["throttled"],
            rate_throttled=data["rate_throttled"],
            first_started=data["first_started"],
            last_finished=data["last_finished"],
        )

    def size(self, channel: tuple[str, str]) -> int:
        """How many participants a channel holds."""
        return self.mirror.channel_size(*channel)


def expected_sids(
    mirror: FlexEmulator, channel: tuple[str, str], chunk: int = 10_000
) -> Iterator[str]:
    """The SIDs the emulator serves for ``channel``, in order, a chunk at a time."""
    for participant in mirror.iter_participants(*channel, chunk=chunk):
        yield participant["sid"]
