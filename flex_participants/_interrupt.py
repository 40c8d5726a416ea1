"""Ending a wait from another task: how `close()` and `aclose()` reach a caller mid-request.

A consumer in ``async for`` waits inside the SDK: for a response, a slot, a backoff or the
prefetched page. When another task closes the client or the stream, that wait must end now,
and as an error or an end of the stream, never as a `CancelledError` escaping into code that
nobody cancelled. So the closer cancels the waiting task, and the waiter's `Wait` turns that
one cancellation back into an ordinary outcome with `Task.uncancel`. A cancellation that
someone else asked for too (a timeout, a task group) is left to propagate, as it must.

Some work must not be cut short by any of these: giving a limiter's slot back, or a slot
that Redis shares with a fleet would stay taken until its lease ran out. `uninterrupted`
runs such work to its end and lets the cancellation go on afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

__all__ = ["Interrupts", "Wait", "uninterrupted"]

logger = logging.getLogger("flex_participants")

T = TypeVar("T")


async def uninterrupted(awaitable: Awaitable[T], what: str) -> T:
    """Await ``awaitable`` to its end even if the task is cancelled meanwhile (by ``close()``,
    a deadline, a timeout, a task group), then let that cancellation go on.

    What ``awaitable`` returns or raises is the outcome, unless the task was cancelled: then
    the `asyncio.CancelledError` is raised, and an error of ``awaitable``, which nobody would
    see, is logged as the failure to ``what``. Keep ``awaitable`` bounded in time: nothing
    but its own end ends it.
    """
    inner = asyncio.ensure_future(awaitable)
    cancelled = False
    while not inner.done():
        try:
            # Unlike awaiting it, a wait for it raises nothing of its own, and being
            # cancelled does not cancel it.
            await asyncio.wait([inner])
        except asyncio.CancelledError:
            cancelled = True
    if not cancelled:
        return inner.result()
    if not inner.cancelled() and (error := inner.exception()) is not None:
        logger.error("failed to %s", what, exc_info=error)
    raise asyncio.CancelledError


class Interrupts:
    """The tasks waiting inside one object (a client, a stream), and a way to end their waits."""

    __slots__ = ("_interrupted", "_waiting")

    def __init__(self) -> None:
        self._waiting: set[asyncio.Task[object]] = set()
        self._interrupted: set[asyncio.Task[object]] = set()

    def wait(self) -> Wait:
        """A context manager around one wait of the current task; see `Wait`."""
        task = asyncio.current_task()
        assert task is not None, "the SDK runs inside asyncio tasks"
        return Wait(self, task)

    def busy(self) -> bool:
        """Whether some task is waiting inside right now."""
        return bool(self._waiting)

    def interrupt(self) -> None:
        """End the wait of every task waiting inside (but the caller's own)."""
        current = asyncio.current_task()
        for task in self._waiting:
            if task is not current and task not in self._interrupted and task.cancel():
                self._interrupted.add(task)


class Wait:
    """``with interrupts.wait() as wait: await ...``; afterwards ``wait.interrupted`` says
    whether the wait was ended by `Interrupts.interrupt` (the `CancelledError` is swallowed)."""

    __slots__ = ("_interrupts", "_task", "interrupted")

    def __init__(self, interrupts: Interrupts, task: asyncio.Task[object]) -> None:
        self._interrupts = interrupts
        self._task = task
        self.interrupted = False

    def __enter__(self) -> Wait:
        self._interrupts._waiting.add(self._task)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        interrupts, task = self._interrupts, self._task
        interrupts._waiting.discard(task)
        if task not in interrupts._interrupted:
            return False
        interrupts._interrupted.discard(task)
        # A cancellation is thrown where the task waits, so ours lands inside this block, and
        # is spent however the block ends (something on the way out may have replaced the
        # CancelledError with its own error): taken back in every case. If it was the only
        # one, the wait just ends; if someone else cancelled the task too (a timeout, a task
        # group), their cancellation goes on.
        remaining = task.uncancel()
        cancelled = exc_type is not None and issubclass(exc_type, asyncio.CancelledError)
        if cancelled and remaining == 0:
            self.interrupted = True
            return True
        return False
