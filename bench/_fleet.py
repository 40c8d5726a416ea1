"""A fleet of processes sharing one `RedisLimiter` on a redis-server of the benchmark's own.

`RedisServer` starts a redis-server on a free loopback port, without persistence, in a
temporary folder, and stops it. `run_fleet` starts the worker processes (``python -m
bench._fleet '{json}'``), lets each open its client, then starts them all at once, and merges
what they delivered. A worker prints ``{"ready": true}`` once its client is open, waits for a
line on its standard input, fetches its channels, and prints its `Delivery` and its timings.
"""

from __future__ import annotations

import asyncio
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
from ._systems import open_system, quiet_sdk_log

__all__ = ["FleetRun", "RedisServer", "free_port", "main", "redis_binary", "run_fleet"]


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
class FleetRun:
    """What a fleet delivered, its wall time by the processes' clocks (from the first one's
    start to the last one's end), and the CPU time of all of them."""

    delivery: Delivery
    wall: float
    cpu: float
    throttled: int
    """429s the processes' limiters were told of."""


async def run_fleet(
    *,
    processes: int,
    base_url: str,
    redis_port: int,
    key: str,
    max_concurrency: int,
    rate_limit: float,
    channels: Sequence[tuple[str, str]],
    page_size: int,
) -> FleetRun:
    """Split ``channels`` between ``processes`` workers sharing a `RedisLimiter` on ``key``
    with ``rate_limit`` and ``max_concurrency``; start them all at once once all are ready."""
    workers = []
    try:
        for index in range(processes):
            spec = {
                "base_url": base_url,
                "redis_port": redis_port,
                "key": key,
                "max_concurrency": max_concurrency,
                "rate_limit": rate_limit,
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
    )


async def _err(worker: asyncio.subprocess.Process) -> str:
    assert worker.stderr is not None
    return (await worker.stderr.read()).decode(errors="replace")[-2000:]


# -- the worker ---------------------------------------------------------------------------


async def _work(spec: dict[str, Any]) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from flex_participants.redis import RedisLimiter

    redis = aioredis.Redis(host="127.0.0.1", port=spec["redis_port"])
    try:
        limiter = RedisLimiter(
            redis,
            key=spec["key"],
            max_concurrency=spec["max_concurrency"],
            rate_limit=spec["rate_limit"],
        )
        channels = [(kd, uo) for kd, uo in spec["channels"]]
        async with open_system("sdk", spec["base_url"], None, limiter=limiter) as system:
            print(json.dumps({"ready": True}), flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            started, cpu = time.time(), time.process_time()
            delivery = Delivery()
            await deliver(system, channels, spec["page_size"], delivery)
            finished, cpu = time.time(), time.process_time() - cpu
    finally:
        await redis.aclose()
    return {
        "delivery": delivery.as_dict(),
        "started": started,
        "finished": finished,
        "cpu": cpu,
        "throttled": limiter.throttled,
    }


def main() -> int:
    """Run one worker of the fleet: its job is the JSON of the first argument."""
    quiet_sdk_log()
    print(json.dumps(asyncio.run(_work(json.loads(sys.argv[1])))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
