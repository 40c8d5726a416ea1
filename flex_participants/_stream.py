"""ParticipantStream: one channel's participants, page by page, with the next page prefetched.

A stream follows ``meta.next_page_url`` from page to page, as the API asks; it never builds
Page or PageToken itself. With ``prefetch=N`` one background task, owned by the stream,
requests up to N pages ahead of the page the caller is consuming. The task ends when the
stream is exhausted, fails, is closed, is garbage-collected, or when its client closes.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Protocol, Self

from yarl import URL

from ._errors import ClientClosedError, FlexError, InvalidResponseError
from ._interrupt import Interrupts
from ._models import Participant, ParticipantPage
from ._request import MAX_PAGE_URL_LENGTH, check_same_origin
from ._response import FetchedPage

__all__ = ["ParticipantStream"]


_FetchPage = Callable[[URL], Awaitable[FetchedPage]]
# The cursor of a stream whose next participant is number `skip` of the page at `url`
# (None: the stream had ended).
_CursorOf = Callable[[URL | None, int], str]
# How much of a refused next_page_url an error shows.
_SHOWN = 200


class _Placed:
    """A fetched page with where it sits in the walk: its URL and the checked URL after it
    (``ended``: there is none, the channel ends here). ``skip`` participants at its start
    were delivered before (by the stream a cursor came from) and are left out of `build`."""

    __slots__ = ("ended", "next_url", "page", "skip", "url")

    def __init__(
        self, page: FetchedPage, url: URL, next_url: URL | None, *, ended: bool, skip: int
    ) -> None:
        self.page = page
        self.url = url
        self.next_url = next_url
        self.ended = ended
        self.skip = skip

    def build(self) -> ParticipantPage:
        page = self.page.build()
        if self.skip:
            page = ParticipantPage(page.participants[self.skip :], page.meta)
        return page


class _Observer(Protocol):
    """Told of the pages a stream delivers and of its end (the client's hooks, if any)."""

    def page_delivered(self, index: int, count: int) -> None: ...

    def closed(self, delivered: int, error: Exception | None) -> None: ...


def _identity(url: URL) -> tuple[object, ...]:
    """What makes two spellings of a URL the same page: case, default port, encoding, the
    order of query parameters and the fragment do not."""
    return (url.scheme, url.host, url.port, url.path, tuple(sorted(url.query.items())))


class _Pager:
    """Walks a channel's pages by ``next_page_url``; knows nothing of the caller.

    Each ``next_page_url`` is resolved against the URL of the page that named it (RFC 3986)
    and must lead to a page of the same channel not fetched before: a server whose paging
    loops (A -> B -> A, or one page spelled two ways), or that points at another channel's
    or another endpoint's URL, fails the walk with `InvalidResponseError` after the pages
    before it, so that no page is delivered twice and paging cannot run away. A page that a
    URL cannot be told to repeat (the first page, named again with Page and PageToken) is
    known by its first participant: a page that starts with the first participant of an
    earlier page is not delivered, and fails the walk the same way. A ``next_page_url`` off
    the client's origin, a hostless one included, fails it with `UnsafeURLError`.

    Resumed from a cursor, the walk starts at the cursor's page, leaving out the first
    ``skip`` participants from there (counted for no ``limit``), or, ``ended``, has nothing
    to walk.
    """

    def __init__(
        self,
        fetch: _FetchPage,
        first_url: URL,
        limit: int | None,
        *,
        skip: int = 0,
        ended: bool = False,
    ) -> None:
        self._fetch = fetch
        self.next_url: URL | None = first_url if limit != 0 and not ended else None
        self._origin = first_url.origin()
        self._path = first_url.path
        self._limit = limit
        self._skip = skip
        self._fetched = -skip  # the limit counts the participants delivered
        self._seen: set[tuple[object, ...]] = set()
        self._tokens: set[str] = set()
        self._first_sids: set[str] = set()
        self._broken: FlexError | None = None

    def exhausted(self) -> bool:
        if self._limit is not None and self._fetched >= self._limit:
            return True
        return self.next_url is None and self._broken is None

    async def fetch_next(self) -> _Placed | None:
        if self.exhausted():
            return None
        if self._broken is not None:
            raise self._broken
        url = self.next_url
        assert url is not None
        self._seen.add(_identity(url))
        token = url.query.get("PageToken")
        if token is not None:
            self._tokens.add(token)
        page = await self._fetch(url)
        first_sid = page.first_sid
        if first_sid is not None:
            if first_sid in self._first_sids:
                # Another URL for a page already delivered (the first page, asked for
                # without Page or PageToken, named again with them): not delivered twice.
                self.stop()
                raise InvalidResponseError(
                    f"this page starts with participant {first_sid!r}, already delivered on an "
                    "earlier page: the server's paging loops",
                    url=str(url),
                    status=200,
                    is_json=True,
                )
            self._first_sids.add(first_sid)
        self._fetched += page.count
        next_url: URL | None = None
        try:
            next_url = self._follow(url, page.next_page_url)
        except FlexError as exc:
            # This page is delivered; the error comes where the next page would have been.
            self._broken = exc
        # An empty page ends the walk even if it names a next page: a server that keeps
        # sending empty pages must not keep us paging forever either.
        self.next_url = next_url if page.count else None
        # A cursor's skip may span pages, if it is resumed in smaller pages than it was made.
        skip = min(self._skip, page.count)
        self._skip -= skip
        ended = self.next_url is None and self._broken is None
        if skip and skip == page.count and not ended:
            return await self.fetch_next()  # nothing of it is left to deliver
        return _Placed(page, url, self.next_url, ended=ended, skip=skip)

    def _follow(self, url: URL, next_page_url: str | None) -> URL | None:
        """The URL of the page after ``url``, checked; raises for one that must not be fetched."""
        if not next_page_url:  # null, or "" as some servers send on the last page
            return None

        def broken(problem: str) -> InvalidResponseError:
            shown = repr(next_page_url)
            if len(next_page_url) > _SHOWN:  # the rest of a body's worth of URL says no more
                shown = f"{next_page_url[:_SHOWN]!r}... ({len(next_page_url)} characters)"
            return InvalidResponseError(
                f"meta.next_page_url {problem}: {shown}",
                url=str(url),
                status=200,
                is_json=True,
            )

        try:
            target = URL(next_page_url)
        except (TypeError, ValueError) as exc:
            raise broken(f"is not a URL ({exc})") from None
        # Resolved against this page (RFC 3986); anything off the origin, a hostless
        # "mailto:" or "https:/path" included, is an UnsafeURLError: credentials stay home.
        target = check_same_origin(target, self._origin, base=url).with_fragment(None)
        # Bounded as sent, so that the cursor of any page a stream fetches is one its client
        # takes back (see _cursor).
        if len(str(target)) > MAX_PAGE_URL_LENGTH:
            raise broken(f"is longer than {MAX_PAGE_URL_LENGTH} characters")
        if target.path != self._path:
            raise broken(f"leads to {target.path}, not to this channel's participants")
        token = target.query.get("PageToken")
        if _identity(target) in self._seen or (token is not None and token in self._tokens):
            raise broken("leads back to a page already fetched (the server's paging loops)")
        return target

    def stop(self) -> None:
        self.next_url = None
        self._broken = None


class _Prefetcher:
    """The stream's background task: requests up to ``depth`` pages ahead of the caller.

    It holds no reference to the stream, so that a stream dropped by its caller is freed at
    once and can cancel this task from ``__del__``.
    """

    def __init__(self, pager: _Pager, depth: int, name: str) -> None:
        self._pager = pager
        # Pages in order, then an exception or None for the end.
        self._buffer: asyncio.Queue[_Placed | Exception | None] = asyncio.Queue()
        # Pages requested but not yet asked for by the caller: at most `depth`.
        self._credits = asyncio.Semaphore(depth)
        # Whether the producer waits for a credit, having fetched `depth` pages ahead.
        self._waiting_for_credit = False
        self.task = asyncio.create_task(self._produce(), name=name)

    async def take(self) -> _Placed | None:
        # Asking for a page means the caller is done with the previous one, so one more page
        # may be requested: released now, before waiting, the producer can request the page
        # after this one the moment this one arrives, without waiting for the caller to wake.
        self._credits.release()
        if self._waiting_for_credit and not self._buffer.empty():
            # The page is here already and the producer waited for this credit: let it
            # start its request first (sent at once if the limiter grants it without a
            # wait), or that request waits until the caller has built and consumed this page.
            await asyncio.sleep(0)
        item = await self._buffer.get()
        if isinstance(item, Exception):
            raise item
        return item

    async def _produce(self) -> None:
        try:
            while not self._pager.exhausted():
                self._waiting_for_credit = True
                try:
                    await self._credits.acquire()
                finally:
                    self._waiting_for_credit = False
                page = await self._pager.fetch_next()
                if page is None:
                    break
                self._buffer.put_nowait(page)
        except asyncio.CancelledError:
            # Cancelled by its stream, which stops taking; but should anyone else cancel it,
            # a caller still to come must not wait for a page that will never arrive.
            self._buffer.put_nowait(FlexError("the stream's prefetch task was cancelled"))
            raise
        except Exception as exc:  # handed to the caller in order, after the pages before it
            self._buffer.put_nowait(exc)
        else:
            self._buffer.put_nowait(None)


class ParticipantStream:
    """The participants of one channel, as an async iterator; made by `FlexClient.participants`.

    ``async for participant in stream`` yields every participant once, in server order.
    `pages` yields whole pages instead, `collect` gathers everything into a list. A stream
    is iterated once. Leaving the loop early is safe: the prefetch is cancelled when the
    stream is closed (``async with stream``, `aclose`), dropped, or its client closes.

    Any `FlexError` of a page is raised where that page would have been, after every
    participant of the pages before it.

    Closing ends every wait at once, from any task: after `aclose` the stream just ends
    (it was closed on purpose); after its client is closed, a consumer still waiting, or
    asking for more, gets `ClientClosedError`, so that a cut-short stream never looks whole.
    One task at a time may iterate a stream: a second task asking for a page while the first
    waits for one gets a `FlexError`.
    """

    def __init__(
        self,
        fetch: _FetchPage,
        first_url: URL,
        *,
        limit: int | None,
        prefetch: int,
        closed: bool = False,
        observer: _Observer | None = None,
        cursor_of: _CursorOf | None = None,
        skip: int = 0,
        ended: bool = False,
    ) -> None:
        self._pager = _Pager(fetch, first_url, limit, skip=skip, ended=ended)
        self._cursor_of = cursor_of
        # The page handed to the caller last, and `_delivered` before it was.
        self._place: _Placed | None = None
        self._page_start = 0
        self._limit = limit
        self._prefetch = prefetch
        self._prefetcher: _Prefetcher | None = None
        self._delivered = 0
        self._current: Iterator[Participant] = iter(())
        # A stream made by a client already closed is born closed, by its client.
        self._closed = closed
        self._closed_by_client = closed
        self._interrupts = Interrupts()
        self._pages_seen = 0
        # Told once, when the stream ends; None without hooks.
        self._observer = observer
        self._failure: Exception | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ParticipantStream {state} delivered={self._delivered} pages={self._pages_seen}>"

    @property
    def pages_fetched(self) -> int:
        """How many pages the caller has been handed so far."""
        return self._pages_seen

    @property
    def delivered(self) -> int:
        """How many participants the caller has been handed so far."""
        return self._delivered

    @property
    def cursor(self) -> str | None:
        """Where this stream stopped, as an opaque string; ``None`` until a participant has
        been delivered.

        ``client.participants(interaction_sid, channel_sid, cursor=stream.cursor)`` goes on
        right after the last participant delivered (also when ``limit`` or a ``break`` ended
        the stream inside a page), and yields nothing if this stream had reached the end of
        the channel. It can be stored: it holds the URL the server gave for that page (no
        credentials), the client's origin and the channel, and is checked on use.
        """
        place, encode = self._place, self._cursor_of
        # What the caller really got: the rest of the page in hand (a tuple's iterator knows
        # its length) was handed but not yet delivered.
        delivered = self._delivered - operator.length_hint(self._current)
        if place is None or encode is None or delivered <= 0:
            return None
        taken = place.skip + delivered - self._page_start
        if taken >= place.page.count:
            if place.ended:
                return encode(None, 0)
            if place.next_url is not None:
                return encode(place.next_url, 0)
        return encode(place.url, taken)

    # -- the caller's side ------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Participant]:
        # An async generator: CPython steps through one far more cheaply than through
        # __anext__ coroutines, and this runs once per participant. It shares the current
        # page with __anext__, so the two can be mixed.
        return self._participants()

    async def _participants(self) -> AsyncIterator[Participant]:
        while True:
            for participant in self._current:
                yield participant
            page = await self._next_page()
            if page is None:
                return
            self._current = iter(page.participants)

    async def __anext__(self) -> Participant:
        # The common case, once per participant, costs one next() on the current page.
        for participant in self._current:
            return participant
        while True:
            page = await self._next_page()
            if page is None:
                raise StopAsyncIteration
            self._current = iter(page.participants)
            for participant in self._current:
                return participant

    def pages(self) -> AsyncIterator[ParticipantPage]:
        """Iterate over whole pages instead of single participants.

        With a ``limit``, the last page holds only the participants the limit leaves.
        """
        return _PageIterator(self)

    async def collect(self) -> list[Participant]:
        """Fetch every (remaining) participant and return them as a list.

        Raises:
            FlexError: any error of any page; nothing is returned then.
        """
        async with self:
            return [participant async for participant in self]

    async def aclose(self) -> None:
        """Stop the stream: cancel the prefetch and wait until it has ended. Idempotent.

        A closed stream yields nothing more, not even the rest of the current page; a
        consumer waiting for a page in another task ends its loop at once.
        """
        self._closed = True
        self._drop_current()
        self._pager.stop()
        self._interrupts.interrupt()
        prefetcher, self._prefetcher = self._prefetcher, None
        if prefetcher is not None and not prefetcher.task.done():
            prefetcher.task.cancel()
            # wait() does not raise, so a cancellation of *our* caller still comes through.
            await asyncio.wait([prefetcher.task])
        self._report_closed()

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
        # Dropped without being closed (a `break` out of `async for`): do not leave the
        # prefetch running for nobody.
        self._cancel()

    def _close_by_client(self) -> list[asyncio.Task[None]]:
        """Close because the client closes: end every wait, and make the rest of the stream,
        if it had not ended, a `ClientClosedError`. Returns the tasks to wait for."""
        if not self._closed:
            self._closed_by_client = True
            if self._observer is not None:
                self._failure = ClientClosedError(
                    "the client was closed while this stream was open"
                )
        self._drop_current()
        self._interrupts.interrupt()
        return self._cancel()

    def _drop_current(self) -> None:
        # Exhaust the current page's iterator rather than replace it: a loop already stepping
        # through it (inside `async for`) must stop too. What it still held was never
        # delivered, so `delivered` stays the count the caller really got.
        self._delivered -= sum(1 for _ in self._current)

    def _cancel(self) -> list[asyncio.Task[None]]:
        """Close without waiting (from `__del__`, and by the client when it closes).

        Returns the task that was cancelled, if any, for the client to wait for.
        """
        self._closed = True
        self._pager.stop()
        # A consumer waiting for a page tells of the end itself, as its wait ends.
        waited = self._interrupts.busy()
        prefetcher = self._prefetcher
        if prefetcher is None or prefetcher.task.done() or prefetcher.task.get_loop().is_closed():
            if not waited:
                self._report_closed()
            return []
        prefetcher.task.cancel()
        if not waited:
            self._report_closed(after=prefetcher.task)
        return [prefetcher.task]

    # -- paging -------------------------------------------------------------------------

    async def _next_page(self) -> ParticipantPage | None:
        if self._closed:
            self._after_close()
            return None
        if self._interrupts.busy():
            raise FlexError(
                "this stream is already being iterated by another task; "
                "a stream has one consumer at a time"
            )
        try:
            with self._interrupts.wait() as wait:
                if self._prefetch == 0:
                    fetched = await self._pager.fetch_next()
                else:
                    if self._prefetcher is None:
                        self._prefetcher = _Prefetcher(
                            self._pager,
                            self._prefetch,
                            name=f"flex_participants prefetch {id(self):x}",
                        )
                    fetched = await self._prefetcher.take()
            if wait.interrupted:  # closed from another task while we waited
                self._after_close()
                return None
            # Built here, on the caller's side: the producer has already sent the request for
            # the page after this one.
            page = fetched.build() if fetched is not None else None
        except BaseException as exc:
            if isinstance(exc, ClientClosedError):
                self._closed_by_client = True  # and so is every later call: never "ended"
            if isinstance(exc, Exception):
                self._failure = exc
            await self.aclose()
            raise
        if page is None:
            await self.aclose()
            return None
        self._place, self._page_start = fetched, self._delivered
        return self._trim(page)

    def _after_close(self) -> None:
        """What a closed stream answers: the end, or `ClientClosedError` if its client closed
        it before it ended."""
        if self._closed_by_client:
            raise ClientClosedError(
                f"the client was closed while this stream was open; {self._delivered} "
                "participants were delivered, the rest were not fetched"
            )

    def _trim(self, page: ParticipantPage) -> ParticipantPage:
        if self._limit is not None:
            room = self._limit - self._delivered
            if len(page.participants) > room:
                page = ParticipantPage(page.participants[:room], page.meta)
        self._delivered += len(page.participants)
        self._pages_seen += 1
        if self._observer is not None:
            self._observer.page_delivered(self._pages_seen - 1, len(page.participants))
        return page

    def _report_closed(self, after: asyncio.Task[None] | None = None) -> None:
        """Tell the observer the stream ended, once; ``after`` the cancelled prefetch has
        ended, so that the end of its request is told first."""
        observer, self._observer = self._observer, None
        if observer is None:
            return
        delivered, failure = self._delivered, self._failure
        if after is None:
            observer.closed(delivered, failure)
        else:  # no reference to the stream: this may run from __del__
            after.add_done_callback(lambda _: observer.closed(delivered, failure))


class _PageIterator:
    """``stream.pages()``: the same stream, one page at a time."""

    def __init__(self, stream: ParticipantStream) -> None:
        self._stream = stream

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ParticipantPage:
        page = await self._stream._next_page()
        if page is None:
            raise StopAsyncIteration
        return page

    async def aclose(self) -> None:
        await self._stream.aclose()
