"""Fleets of processes on one budget: sharing one `RedisLimiter` on a redis-server of the
benchmark's own, or each a `FlexClient()` of its own that knows nothing of the others (a
crowd, as a few workers of one account without Redis are).

`RedisServer` starts a redis-server on a free loopback port, without persistence, in a
temporary folder, and stops it. `run_fleet` starts the worker processes (``python -m
bench._fleet '{json}'``), lets each open its client, then starts them all at once, and merges
what they delivered. A worker prints ``{"ready": true}`` once its client is open, waits for a
line on its standard input, fetches its channels, and prints its `Delivery`, its timings and
its client's counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, Self

import attrs

from ._budget import Delivery, deliver
from ._emulator import ROOT
from ._spawner import Closing, stop_process
from ._systems import SdkSystem, quiet_sdk_log

__all__ = [
    "FleetRun",
    "RedisServer",
    "SharedLimit",
    "free_port",
    "main",
    "redis_binary",
    "run_fleet",
]


def redis_binary() -> str | None:
    """The redis-server on ``PATH``, else Debian's at /usr/bin/redis-server, if any."""
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    return found


def free_port() -> int:
    """A loopback TCP port that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer(Closing):
    """A redis-server on a free loopback port, in a temporary folder, without persistence.

    It starts on ``__enter__`` and stops on `close` (the end of the ``with`` block). The test
    suite starts its servers with this class too.
    """

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Self:
        """Start the server and wait until it listens.

        Raises:
            RuntimeError: there is no redis-server, or it exits or does not listen within
                10 s (with what it logged).
        """
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("no redis-server on PATH or at /usr/bin/redis-server")
        self._folder = tempfile.TemporaryDirectory(prefix="flex-redis-")
        log = Path(self._folder.name) / "redis.log"
        self.port = free_port()
        self._process = subprocess.Popen(  # noqa: S603 - redis-server, our own arguments
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", self._folder.name, "--logfile", str(log)),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            if self._process.poll() is not None:
                problem = f"redis-server exited with {self._process.returncode}"
                self._fail(f"{problem}: {log.read_text(errors='replace') if log.exists() else ''}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if time.monotonic() > deadline:
                self._fail("redis-server did not listen within 10 s")
            time.sleep(0.02)

    def _fail(self, message: str) -> NoReturn:
        self.close()
        raise RuntimeError(message)

    def close(self) -> None:
        """Stop the process and clean up after it; a second call does nothing."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)
        folder, self._folder = self._folder, None
        if folder is not None:
            folder.cleanup()


@attrs.frozen
class SharedLimit:
    """One `RedisLimiter` for every process of a fleet, on ``key`` of the redis-server at
    ``redis_port``, told the budget."""

    redis_port: int
    key: str
    max_concurrency: int
    rate_limit: float


@attrs.frozen
class FleetRun:
    """What a fleet delivered, its wall time by the processes' clocks (from the first one's
    start to the last one's end), the CPU time of all of them, and each process's own wall
    and counters."""

    delivery: Delivery
    wall: float
    cpu: float
    throttled: int
    """429s the processes' clients received."""
    walls: tuple[float, ...] = ()
    """Each process's own wall: from its start to the end of its share of the channels."""
    requests: tuple[int, ...] = ()
    """Each process's requests, retries of 429s included."""

    @property
    def spread(self) -> float:
        """How unequal the processes' shares of the budget were: the longest own wall over
        the shortest, less 1 (each process has as many channels to fetch); 0 for one."""
        return max(self.walls) / min(self.walls) - 1 if self.walls else 0.0


async def run_fleet(
    *,
    processes: int,
    base_url: str,
    channels: Sequence[tuple[str, str]],
    page_size: int,
    shared: SharedLimit | None,
) -> FleetRun:
    """Split ``channels`` between ``processes`` workers, each on the ``shared`` limiter, or
    each a `FlexClient()` of its own (``None``); start them all at once once all are ready."""
    workers = []
    try:
        for index in range(processes):
            spec = {
                "base_url": base_url,
                "shared": None if shared is None else attrs.asdict(shared),
                "channels": [list(channel) for channel in channels[index::processes]],
                "page_size": page_size,
            }
            workers.append(
                await asyncio.create_subprocess_exec(
                    *(sys.executable, "-m", "bench._fleet", json.dumps(spec)),
                    cwd=ROOT,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
            )
        for worker in workers:
            assert worker.stdout is not None
            if not await worker.stdout.readline():
                raise RuntimeError(
                    f"a fleet worker ended before it was ready: {await _err(worker)}"
                )
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
        for worker in workers:
            assert worker.stdin is not None
            await worker.stdin.drain()
        reports = []
        for worker in workers:
            stdout, stderr = await worker.communicate()
            if worker.returncode != 0:
                raise RuntimeError(
                    f"a fleet worker failed ({worker.returncode}): {stderr[-2000:]!r}"
                )
            reports.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    delivery = Delivery()
    for report in reports:
        delivery.merge(Delivery.from_dict(report["delivery"]))
    return FleetRun(
        delivery=delivery,
        wall=max(report["finished"] for report in reports)
        - min(report["started"] for report in reports),
        cpu=sum(report["cpu"] for report in reports),
        throttled=sum(report["throttled"] for report in reports),
        walls=tuple(report["finished"] - report["started"] for report in reports),
        requests=tuple(report["requests"] for report in reports),
    )


async def _err(worker: asyncio.subprocess.Process) -> str:
    assert worker.stderr is not None
    return (await worker.stderr.read()).decode(errors="replace")[-2000:]


# -- the worker ---------------------------------------------------------------------------


async def _work(spec: dict[str, Any]) -> dict[str, Any]:
    channels = [(kd, uo) for kd, uo in spec["channels"]]
    async with contextlib.AsyncExitStack() as stack:
        options: dict[str, Any] = {}
        shared = spec["shared"]
        if shared is not None:
            import redis.asyncio as aioredis

            from flex_participants.redis import RedisLimiter

            redis = aioredis.Redis(host="127.0.0.1", port=shared["redis_port"])
            stack.push_async_callback(redis.aclose)
            options["limiter"] = RedisLimiter(
                redis,
                key=shared["key"],
                max_concurrency=shared["max_concurrency"],
                rate_limit=shared["rate_limit"],
            )
        # No concurrency given: the client's own defaults, as a new user builds it.
        system = await stack.enter_async_context(SdkSystem(spec["base_url"], None, **options))
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        started, cpu = time.time(), time.process_time()
        delivery = Delivery()
        await deliver(system, channels, spec["page_size"], delivery)
        finished, cpu = time.time(), time.process_time() - cpu
        stats = system.client_stats()
    return {
        "delivery": delivery.as_dict(),
        "started": started,
        "finished": finished,
        "cpu": cpu,
        "throttled": stats.throttled,
        "requests": stats.requests,
    }


def main() -> int:
    """Run one worker of the fleet: its job is the JSON of the first argument."""
    quiet_sdk_log()
    print(json.dumps(asyncio.run(_work(json.loads(sys.argv[1])))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
