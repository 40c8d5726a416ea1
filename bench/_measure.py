"""How a run is measured: wall and CPU time with the collector settled, live tasks, and RSS."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from typing import Any, Self

import attrs

__all__ = ["Fingerprint", "TaskCounter", "Timing", "max_rss_mb", "timed", "vm_hwm_mb"]


@attrs.frozen
class Timing:
    """One timed run."""

    wall: float
    """Seconds, `time.perf_counter`."""
    cpu: float
    """Seconds of CPU of this process (all threads), `time.process_time`."""


async def timed(run: Callable[[], Awaitable[None]]) -> Timing:
    """Time ``run()``; collect and freeze the heap first, so no earlier garbage is paid for."""
    gc.collect()
    gc.freeze()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        await run()
        return Timing(time.perf_counter() - wall, time.process_time() - cpu)
    finally:
        gc.unfreeze()


def max_rss_mb() -> float:
    """The peak resident set of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Kilobytes on Linux, bytes on macOS.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def vm_hwm_mb() -> float | None:
    """The peak resident set of this process's memory since it started (Linux), in MB.

    A cross-check of `max_rss_mb`, which also counts the peak of whatever ran this process.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class TaskCounter:
    """The loop's task factory: counts the tasks alive, and the most alive at once."""

    def __init__(self) -> None:
        self.alive = 0
        self.peak = 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self.alive = len(asyncio.all_tasks(loop))
        self.peak = self.alive
        loop.set_task_factory(self._create)

    def _create(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        **kwargs: Any,
    ) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **kwargs)
        self.alive += 1
        self.peak = max(self.peak, self.alive)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.alive -= 1


@attrs.define
class Fingerprint:
    """An order-free summary of a multiset of strings: count, and the sum and XOR of a 64-bit
    digest of each. Losing, repeating or changing any string changes it (but for a chance of
    2**-64), without keeping the strings."""

    count: int = 0
    total: int = 0
    xor: int = 0

    def add(self, text: str | None) -> None:
        value = int.from_bytes(hashlib.blake2b(str(text).encode(), digest_size=8).digest(), "big")
        self.count += 1
        self.total = (self.total + value) & 0xFFFF_FFFF_FFFF_FFFF
        self.xor ^= value

    def add_all(self, texts: Iterable[str | None]) -> Self:
        for text in texts:
            self.add(text)
        return self

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "total": self.total, "xor": self.xor}
