"""ChannelBatch: many channels fetched concurrently by a bounded window of workers.

Work is pulled from the caller's iterable only when a worker is free, and results wait in a
queue no longer than the window, so a generator of a million channels costs as many tasks
and as much memory as the window, not as the input.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Final, Self

from ._errors import ClientClosedError, FlexError, InvalidArgumentError
from ._models import ChannelResult, Participant

__all__ = ["ChannelBatch", "Channels"]

Channels = Iterable[tuple[str, str]] | AsyncIterable[tuple[str, str]]
_Collect = Callable[[str, str], Awaitable[tuple[Participant, ...]]]
_Follow = Callable[[], int]
"""How many channels to work on at once now (a limiter's level); the window caps it."""
_END: Final = object()


class _Source:
    """The caller's channels, read by one worker at a time."""

    def __init__(self, channels: Channels) -> None:
        self._sync: Iterator[tuple[str, str]] | None = None
        self._async: AsyncIterator[tuple[str, str]] | None = None
        if isinstance(channels, AsyncIterable):
            self._async = aiter(channels)
        elif isinstance(channels, Iterable) and not isinstance(channels, str | bytes):
            self._sync = iter(channels)
        else:
            raise InvalidArgumentError(
                f"channels must be an iterable or async iterable of (interaction_sid, channel_sid)"
                f" pairs, got {type(channels).__name__}"
            )
        self._lock = asyncio.Lock()
        self.done = False
        self.ended = False
        """Whether the input itself ended (or raised), not merely stopped by a cancellation."""
        self.taken = 0

    async def next(self) -> object:
        """The next item, or `_END`; the iterable's own exception propagates."""
        async with self._lock:
            if self.done:
                return _END
            try:
                if self._async is not None:
                    item: object = await anext(self._async)
                else:
                    assert self._sync is not None
                    item = next(self._sync)
            except (StopIteration, StopAsyncIteration):
                self.done = self.ended = True
                return _END
            except Exception:
                self.done = self.ended = True
                raise
            except BaseException:  # cancelled mid-read: what the input still held is unknown
                self.done = True
                raise
            self.taken += 1
            return item


class _Workers:
    """The batch's tasks and their queue; holds no reference to the `ChannelBatch`.

    Workers are started as the input proves to have work for them: each one that takes an
    item starts the next, up to the window, so that three channels under a window of 100,000
    cost four tasks. Every worker is accounted for by a done callback, which runs however it
    ends (even cancelled before it ever ran): the last one to end closes the queue.
    """

    def __init__(
        self, source: _Source, collect: _Collect, window: int, follow: _Follow | None
    ) -> None:
        self._source = source
        self._collect = collect
        self._window = window
        self._follow = follow
        self.results: asyncio.Queue[ChannelResult | BaseException | object] = asyncio.Queue()
        # Results waiting for the caller are bounded by this, not by the queue, so that the
        # closing put below never blocks.
        self.room = asyncio.Semaphore(window)
        self._failure: BaseException | None = None
        self._started = 0
        self._active = 0  # workers started that have not decided to end
        self.tasks: set[asyncio.Task[None]] = set()
        self._start()

    def _start(self) -> None:
        self._started += 1
        self._active += 1
        task = asyncio.create_task(
            self._work(), name=f"flex_participants batch worker {self._started}"
        )
        self.tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # _work lets nothing but BaseExceptions out (KeyboardInterrupt, SystemExit):
            # retrieved here, and raised by the batch rather than lost.
            self._failure = self._failure or exc
        if not self.tasks:
            if self._failure is not None:
                self.results.put_nowait(self._failure)
            self.results.put_nowait(_END)

    def _wanted(self) -> int:
        """How many workers there should be now: the window, or less, as ``follow`` says."""
        if self._follow is None:
            return self._window
        return max(1, min(self._window, self._follow()))

    async def _work(self) -> None:
        try:
            await self._take_items()
        finally:
            # At once, in this step: a worker deciding whether to leave counts the others.
            self._active -= 1

    async def _take_items(self) -> None:
        while True:
            if self._active > self._wanted():
                return  # the window shrank, and at least one other worker goes on
            try:
                item = await self._source.next()
            except Exception as exc:  # the caller's iterable failed: finish what is running
                self._failure = self._failure or exc
                return
            if item is _END:
                return
            if self._active < self._wanted() and not self._source.done:
                self._start()
            result = await self._one(item)
            await self.room.acquire()
            self.results.put_nowait(result)

    async def _one(self, item: object) -> ChannelResult:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            error = InvalidArgumentError(
                f"a channel must be an (interaction_sid, channel_sid) pair, got {item!r}"
            )
            return ChannelResult(repr(item), "", (), error)
        interaction_sid, channel_sid = item
        try:
            participants = await self._collect(interaction_sid, channel_sid)
        except FlexError as exc:  # an invalid SID included: it fails its channel only
            return ChannelResult(str(interaction_sid), str(channel_sid), (), exc)
        except Exception as exc:
            # Whatever else escapes a channel's work (a custom limiter, a bug) fails that
            # channel, typed, with the original as its cause: never the batch's bookkeeping.
            failure = FlexError(f"fetching this channel failed: {type(exc).__name__}: {exc}")
            failure.__cause__ = exc
            return ChannelResult(str(interaction_sid), str(channel_sid), (), failure)
        return ChannelResult(interaction_sid, channel_sid, participants, None)

    def cancel(self) -> list[asyncio.Task[None]]:
        cancelled = [t for t in self.tasks if not t.done() and not t.get_loop().is_closed()]
        for task in cancelled:
            task.cancel()
        return cancelled


class ChannelBatch:
    """Results for many channels, yielded as each channel completes; made by
    `FlexClient.participants_for_channels`.

    ``async for result in batch`` yields exactly one `ChannelResult` per input item, in
    completion order, or raises; it never just ends early. A channel that fails, for
    whatever reason, yields a result with ``error`` set (a `FlexError`, with the original
    exception as its ``__cause__`` when it was not one) and the batch goes on. What fails
    the batch as a whole is raised, after the results already completed: the caller's
    iterable raising (its own exception), or the client closing (`ClientClosedError`).
    Leaving the loop early cancels the work still running once the batch is closed
    (``async with``, `aclose`) or dropped.
    """

    def __init__(
        self, channels: Channels, collect: _Collect, *, window: int, follow: _Follow | None = None
    ) -> None:
        self._workers: _Workers | None = None
        self._source = _Source(channels)
        self._collect = collect
        self._window = window
        self._follow = follow
        self._finished = False
        self._closed_by_client = False
        self.completed = 0
        """How many results have been yielded."""
        self.failed = 0
        """How many of them carried an error."""

    def __repr__(self) -> str:
        return (
            f"<ChannelBatch completed={self.completed} failed={self.failed} window={self._window}>"
        )

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChannelResult:
        if self._finished:
            if self._closed_by_client and not self._whole():
                raise self._closed_error()
            raise StopAsyncIteration  # it ended, or its caller closed it on purpose
        if self._workers is None:
            self._workers = _Workers(self._source, self._collect, self._window, self._follow)
        try:
            item = await self._workers.results.get()
        except BaseException:
            await self.aclose()
            raise
        if item is _END:
            await self.aclose()
            self._raise_if_cut_short()
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            await self.aclose()
            raise item
        assert isinstance(item, ChannelResult)
        self._workers.room.release()
        self.completed += 1
        if item.error is not None:
            self.failed += 1
        return item

    def _whole(self) -> bool:
        """Whether the input ran out and every item taken from it has its result."""
        return self._source.ended and self.completed == self._source.taken

    def _closed_error(self) -> ClientClosedError:
        return ClientClosedError(
            f"the client was closed during this batch: {self.completed} of the "
            f"{self._source.taken} channels started have a result"
        )

    def _raise_if_cut_short(self) -> None:
        if self._whole():
            return
        if self._closed_by_client:
            raise self._closed_error()
        # Only a cancellation from outside the SDK gets here (of a worker, or of the input's
        # own await): an end now would look complete, and is not.
        raise FlexError(
            f"this batch's work was cancelled: {self._source.taken - self.completed} of the "
            f"{self._source.taken} channels started have no result, and the input was "
            + ("read to its end" if self._source.ended else "not read to its end")
        )

    async def aclose(self) -> None:
        """Cancel the channels still under way and wait for the workers to end. Idempotent."""
        self._finished = True
        workers, self._workers = self._workers, None
        if workers is not None:
            tasks = workers.cancel()
            if tasks:
                await asyncio.wait(tasks)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if self._workers is not None:
            self._workers.cancel()

    def _close_by_client(self) -> list[asyncio.Task[None]]:
        """Close because the client closes (without waiting); return what was cancelled.

        A consumer waiting for a result wakes when the workers have ended: it gets the
        results already completed, then `ClientClosedError`; a batch already over stays so.
        """
        if not self._finished:
            self._closed_by_client = True
        if self._workers is None:
            self._finished = True
            return []
        return self._workers.cancel()
