"""Per-call options: the timeout, retry policy and deadline that one call sets over the client's.

A deadline is enforced as ``close()`` ends a wait (see `_interrupt`): its timer cancels the
waiting task, and the scope around the request turns that one cancellation back into a
`DeadlineExceededError` with `Task.uncancel`. A cancellation that someone else asked for too
(``close()``, an outside timeout, a task group) is left to propagate, so that a deadline is
never mistaken for either, nor either for a deadline.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import aiohttp
import attrs

from ._arguments import check_quantity
from ._errors import DeadlineExceededError, InvalidArgumentError
from ._retry import RetryPolicy

__all__ = ["CallOptions", "Deadline", "DeadlineScope", "call_options"]


class Deadline:
    """``seconds`` for a whole call, counted from its first request; shared by every request
    of the call (the pages of a stream, the retries of a page)."""

    __slots__ = ("_at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at: float | None = None

    def at(self, loop: asyncio.AbstractEventLoop) -> float:
        """The loop time at which the call runs out; the clock starts on the first ask."""
        if self._at is None:
            self._at = loop.time() + self.seconds
        return self._at


@attrs.frozen
class CallOptions:
    """What one call's requests use: per attempt ``timeout``, ``retry`` policy, ``deadline``."""

    timeout: aiohttp.ClientTimeout
    retry: RetryPolicy
    deadline: Deadline | None = None

    def scope(self, url: object) -> DeadlineScope:
        """A scope for one request's attempts and backoffs (see `DeadlineScope`)."""
        return DeadlineScope(self.deadline, url)


def call_options(
    default: CallOptions, *, timeout: object, retry: object, deadline: object
) -> CallOptions:
    """The options of one call: ``default`` (the client's) with what the call overrides.

    Raises:
        InvalidArgumentError: ``timeout`` or ``deadline`` is not a finite number of seconds
            above 0, or ``retry`` is not a `RetryPolicy`.
    """
    if timeout is None and retry is None and deadline is None:
        return default
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise InvalidArgumentError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
    return CallOptions(
        timeout=default.timeout
        if timeout is None
        else aiohttp.ClientTimeout(
            total=check_quantity("timeout", timeout, strict=True, unit="seconds")
        ),
        retry=default.retry if retry is None else retry,
        deadline=None
        if deadline is None
        else Deadline(check_quantity("deadline", deadline, strict=True, unit="seconds")),
    )


class DeadlineScope:
    """``with options.scope(url) as scope:`` around one request's attempts and backoffs.

    Without a deadline it does nothing. With one, a call whose deadline has passed fails on
    entry, before anything is sent; a wait inside (for a slot, a response) still under way
    when it runs out ends with `DeadlineExceededError`; `check_backoff` refuses a backoff that
    would end past it. ``scope.attempts`` is kept up to date by the caller, for the error.
    """

    __slots__ = ("_cancelling", "_deadline", "_expired", "_handle", "_task", "_url", "attempts")

    def __init__(self, deadline: Deadline | None, url: object) -> None:
        self._deadline = deadline
        self._url = url
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False
        self._cancelling = 0
        self.attempts = 0

    def __enter__(self) -> DeadlineScope:
        deadline = self._deadline
        if deadline is None:
            return self
        loop = asyncio.get_running_loop()
        at = deadline.at(loop)
        if loop.time() >= at:
            raise self._error("ran out before")
        task = asyncio.current_task()
        assert task is not None, "the SDK runs inside asyncio tasks"
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = loop.call_at(at, self._expire)
        return self

    def _expire(self) -> None:
        self._handle = None
        assert self._task is not None
        if self._task.cancel():
            self._expired = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._expired:
            return
        self._expired = False
        assert self._task is not None
        # Our cancellation is taken back however the block ends. Only if it was the only new
        # one is it ours to answer: with close() or an outside cancellation on top, theirs
        # goes on, as a cancellation.
        remaining = self._task.uncancel()
        if (
            exc_type is not None
            and issubclass(exc_type, asyncio.CancelledError)
            and remaining <= self._cancelling
        ):
            raise self._error("ran out during") from None

    def check_backoff(self, delay: float, error: BaseException) -> None:
        """Raise `DeadlineExceededError` (from ``error``) if waiting ``delay`` seconds before
        the next attempt would end at or past the deadline: better now than after the wait."""
        deadline = self._deadline
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() + delay >= deadline.at(loop):
            raise self._error(f"would run out during the {delay:.3f} s wait to retry") from error

    def _error(self, when: str) -> DeadlineExceededError:
        assert self._deadline is not None
        seconds = self._deadline.seconds
        url = str(self._url)
        return DeadlineExceededError(
            f"the deadline of {seconds:g} s {when} the request to {url}",
            deadline=seconds,
            url=url,
            attempts=self.attempts,
        )
