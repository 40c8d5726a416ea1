"""Ending a wait from another task: how `close()` and `aclose()` reach a caller mid-request.

A consumer in ``async for`` waits inside the SDK: for a response, a slot, a backoff or the
prefetched page. When another task closes the client or the stream, that wait must end now,
and as an error or an end of the stream, never as a `CancelledError` escaping into code that
nobody cancelled. So the closer cancels the waiting task, and the waiter's `Wait` turns that
one cancellation back into an ordinary outcome with `Task.uncancel`. A cancellation that
someone else asked for too (a timeout, a task group) is left to propagate, as it must.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["Interrupts", "Wait"]


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
