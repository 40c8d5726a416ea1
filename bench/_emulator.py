"""The harness's side of the emulator: start it in a process of its own, read and reset its
counters, and know what it serves (the SIDs every system must return)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from flex_participants.emulator import FlexEmulator

from ._server import build

__all__ = ["EmulatorProcess", "ServerStats", "expected_sids"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class ServerStats:
    """The emulator's counters over one timed run."""

    requests: int
    service_time: float
    peak_in_flight: int
    throttled: int

    @property
    def per_request(self) -> float:
        """S: the measured service time of one request, in seconds."""
        return self.service_time / self.requests if self.requests else 0.0


class EmulatorProcess:
    """``python -m bench._server`` with a seed, a latency and channel groups, for one scenario."""

    def __init__(self, *, seed: int, groups: Sequence[str], latency: float = 0.0) -> None:
        self.seed = seed
        self.groups = list(groups)
        self.latency = latency
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""
        # The same seed and groups, never started: the SIDs the server will serve.
        self.mirror = build(seed, groups, latency=latency)
        self.channels = self.mirror.channels

    def __enter__(self) -> Self:
        command = [sys.executable, "-m", "bench._server", "--seed", str(self.seed)]
        command += ["--latency", repr(self.latency)]
        for group in self.groups:
            command += ["--group", group]
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the emulator did not start: {' '.join(command)}")
        self.base_url = json.loads(line)["base_url"]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
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
        """The counters since the last reset (``GET /__emulator__/stats?log=0``)."""
        data: dict[str, Any] = json.loads(self._call("GET", "/__emulator__/stats?log=0"))
        return ServerStats(
            requests=data["requests"],
            service_time=data["service_time"],
            peak_in_flight=data["peak_in_flight"],
            throttled=data["throttled"],
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
