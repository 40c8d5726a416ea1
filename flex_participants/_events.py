"""What a client tells its hooks: the events, as frozen attrs classes, and how they are sent.

A client with hooks (``FlexClient(hooks=[...])``) calls each hook with each event, in the
task that caused it, before it goes on. Events are built here only, by `ClientEvents` and
what it hands out (`RequestEvents`, `StreamEvents`): each site in the client tells one of
them in one call. A client without hooks has no `ClientEvents`, so that it pays nothing.

The events of one HTTP request (one attempt) share its ``id``: `RequestSent`, then either
`ResponseReceived` or `RequestFailed`, then, if it is retried, `RetryScheduled`. The events of
one stream share its ``stream_id``: `StreamOpened`, the requests of its pages, a
`PageDelivered` for each page handed to the caller, and `StreamClosed`.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeAlias

import attrs

from ._errors import FlexError, InvalidArgumentError
from ._response import concurrent_requests

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

__all__ = [
    "ClientEvents",
    "ClientStats",
    "Event",
    "Hook",
    "LimitChanged",
    "PageDelivered",
    "RequestEvents",
    "RequestFailed",
    "RequestSent",
    "ResponseReceived",
    "RetryScheduled",
    "StreamClosed",
    "StreamEvents",
    "StreamOpened",
    "check_hooks",
    "emit",
    "read_limits",
]

logger = logging.getLogger("flex_participants")


# -- one HTTP request --------------------------------------------------------------------


@attrs.frozen
class RequestSent:
    """An HTTP request is about to be sent: it has its slot (and its token of the rate).

    Attributes:
        id: the request's number, unique within the client; its other events carry it too.
        method: the HTTP method, ``"GET"``.
        url: the full URL; it never carries credentials (they go in a header, never shown).
        attempt: 1 for the first attempt of a fetch, 2 for its first retry, and so on.
        stream_id: the `StreamOpened.stream_id` of the stream the request is for, or
            ``None`` for ``fetch_page`` and ``fetch_page_url``.
    """

    id: int
    method: str
    url: str
    attempt: int
    stream_id: int | None = None


@attrs.frozen
class ResponseReceived:
    """The response to a `RequestSent` has been read whole, whatever its status.

    A 200 whose body is no page of participants fails its fetch after this event.

    Attributes:
        id: the `RequestSent.id` of the request answered.
        method: the HTTP method.
        url: the full URL, without credentials.
        attempt: the attempt number, as in `RequestSent`.
        status: the HTTP status code.
        elapsed: seconds from sending the request to having read its body.
        size: the body's size in bytes, as read (after decompression).
        request_id: the ``Twilio-Request-Id`` header, or ``None``.
        concurrent_requests: the ``Twilio-Concurrent-Requests`` header as an ``int``, or
            ``None``.
        stream_id: as in `RequestSent`.
    """

    id: int
    method: str
    url: str
    attempt: int
    status: int
    elapsed: float
    size: int
    request_id: str | None
    concurrent_requests: int | None
    stream_id: int | None = None


@attrs.frozen
class RequestFailed:
    """A `RequestSent` got no whole response: the connection failed, the attempt timed out,
    the body was too large, or the request was cancelled (its client closed, its task
    cancelled).

    Attributes:
        id: the `RequestSent.id` of the request.
        method: the HTTP method.
        url: the full URL, without credentials.
        attempt: the attempt number, as in `RequestSent`.
        elapsed: seconds from sending the request to its failure.
        error: the `FlexError` the attempt failed with (a `TransportError`, a
            `ResponseTooLargeError`), or the `asyncio.CancelledError` that ended it.
        stream_id: as in `RequestSent`.
    """

    id: int
    method: str
    url: str
    attempt: int
    elapsed: float
    error: BaseException
    stream_id: int | None = None


@attrs.frozen
class RetryScheduled:
    """A failed request will be sent again after ``delay`` seconds.

    Attributes:
        id: the `RequestSent.id` of the attempt that failed; the retry is a request of its
            own, with a new id and ``attempt + 1``.
        url: the full URL, without credentials.
        attempt: the number of the attempt that failed.
        delay: seconds until the retry is sent (it waits for a slot after that).
        error: what the attempt failed with.
        stream_id: as in `RequestSent`.
    """

    id: int
    url: str
    attempt: int
    delay: float
    error: FlexError
    stream_id: int | None = None


@attrs.frozen
class LimitChanged:
    """The client's limiter has a new `level` or `rate`, as read after a request's slot
    was given back (after a 429, or as an adaptive limiter grows).

    Attributes:
        level: the requests that may be in flight at once now, or ``None`` where the limiter
            has no ``level``.
        rate: the requests per second that may start now, or ``None`` where it has no rate.
    """

    level: int | None
    rate: float | None


# -- one stream --------------------------------------------------------------------------


@attrs.frozen
class StreamOpened:
    """A stream of one channel's participants was made (by ``participants`` or a batch).

    Attributes:
        stream_id: the stream's number, unique within the client; carried by the events of
            the requests made for it.
        interaction_sid: the interaction SID.
        channel_sid: the channel SID.
    """

    stream_id: int
    interaction_sid: str
    channel_sid: str


@attrs.frozen
class PageDelivered:
    """A page of a stream was handed to its caller.

    Attributes:
        interaction_sid: the interaction SID.
        channel_sid: the channel SID.
        page: the page's index in the stream: 0 for the first page delivered.
        count: how many participants it held (fewer than the server sent where a ``limit``
            ends the stream inside the page).
        stream_id: the `StreamOpened.stream_id` of the stream.
    """

    interaction_sid: str
    channel_sid: str
    page: int
    count: int
    stream_id: int | None = None


@attrs.frozen
class StreamClosed:
    """A stream ended: read to its end, failed, closed early, or closed with its client.

    Attributes:
        stream_id: the `StreamOpened.stream_id` of the stream.
        interaction_sid: the interaction SID.
        channel_sid: the channel SID.
        delivered: how many participants the caller was handed.
        error: the exception that ended the stream, or ``None``.
    """

    stream_id: int
    interaction_sid: str
    channel_sid: str
    delivered: int
    error: Exception | None = None


Event: TypeAlias = (
    RequestSent
    | ResponseReceived
    | RequestFailed
    | RetryScheduled
    | LimitChanged
    | StreamOpened
    | PageDelivered
    | StreamClosed
)
Hook: TypeAlias = Callable[[Event], object]


@attrs.frozen
class ClientStats:
    """A snapshot of what a client has done, from `FlexClient.stats`.

    Attributes:
        requests: HTTP requests sent (attempts, retries included).
        retries: how many of them were retries.
        throttled: how many responses were 429s.
        in_flight: requests holding a slot of the limiter now.
        level: the limiter's ``level`` (requests allowed in flight now), or ``None`` where
            the limiter has none.
        rate: the limiter's ``rate`` (requests per second allowed now), or ``None`` where it
            has none (``rate_limit=None``, or a limiter of one's own without one).
    """

    requests: int
    retries: int
    throttled: int
    in_flight: int
    level: int | None
    rate: float | None


# -- sending them ------------------------------------------------------------------------


def check_hooks(hooks: Iterable[Hook] | None) -> tuple[Hook, ...]:
    """The hooks as a tuple, each checked to be a plain callable.

    Raises:
        InvalidArgumentError: ``hooks`` is not an iterable of callables, or one of them is an
            ``async def`` function (hooks are called synchronously, so its coroutine would
            never run).
    """
    if hooks is None:
        return ()
    if isinstance(hooks, str | bytes) or not isinstance(hooks, Iterable):
        raise InvalidArgumentError(
            f"hooks must be an iterable of callables, got {type(hooks).__name__}"
        )
    checked = tuple(hooks)
    for hook in checked:
        if not callable(hook):
            raise InvalidArgumentError(f"a hook must be callable, got {hook!r}")
        if _is_async(hook):
            raise InvalidArgumentError(
                f"a hook must be a plain function, not an async one: {hook!r} would return "
                "a coroutine that nobody awaits (hooks are called synchronously)"
            )
    return checked


def _is_async(hook: object) -> bool:
    # An object whose __call__ is an async method returns a coroutine too.
    call = type(hook).__call__ if not inspect.isroutine(hook) else None
    return inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(call)


def emit(hooks: tuple[Hook, ...], event: Event) -> None:
    """Call each hook with ``event``; one that raises is logged, with its traceback, and the
    others are still called."""
    for hook in hooks:
        try:
            hook(event)
        except Exception:
            logger.exception(
                "a hook (%r) raised on %s; the client goes on", hook, type(event).__name__
            )


class StreamEvents:
    """What a stream of a client with hooks tells them: its pages and its end."""

    __slots__ = ("_channel_sid", "_hooks", "_interaction_sid", "stream_id")

    def __init__(
        self, hooks: tuple[Hook, ...], stream_id: int, interaction_sid: str, channel_sid: str
    ) -> None:
        self._hooks = hooks
        self.stream_id = stream_id
        self._interaction_sid = interaction_sid
        self._channel_sid = channel_sid

    def opened(self) -> None:
        emit(self._hooks, StreamOpened(self.stream_id, self._interaction_sid, self._channel_sid))

    def page_delivered(self, index: int, count: int) -> None:
        emit(
            self._hooks,
            PageDelivered(self._interaction_sid, self._channel_sid, index, count, self.stream_id),
        )

    def closed(self, delivered: int, error: Exception | None) -> None:
        emit(
            self._hooks,
            StreamClosed(
                self.stream_id, self._interaction_sid, self._channel_sid, delivered, error
            ),
        )


def read_limits(limiter: object) -> tuple[int | None, float | None]:
    """The limiter's ``level`` and ``rate``, where it has them (the `Limiter` protocol asks for
    neither)."""
    try:
        level = getattr(limiter, "level", None)
        rate = getattr(limiter, "rate", None)
    except Exception:  # a limiter of one's own whose property fails: it has none to tell
        return None, None
    if type(level) is not int:
        level = None
    if type(rate) is int:
        rate = float(rate)
    elif type(rate) is not float:
        rate = None
    return level, rate


class RequestEvents:
    """What one HTTP attempt of a client with hooks tells them, all under one ``id``."""

    __slots__ = ("_hooks", "_started", "attempt", "id", "stream_id", "url")

    def __init__(
        self, hooks: tuple[Hook, ...], event_id: int, url: str, attempt: int, stream_id: int | None
    ) -> None:
        self._hooks = hooks
        self.id = event_id
        self.url = url
        self.attempt = attempt
        self.stream_id = stream_id
        self._started = 0.0  # set when the request is sent

    def sent(self) -> None:
        """`RequestSent`; the elapsed times of the events after it count from here."""
        self._started = time.perf_counter()
        emit(self._hooks, RequestSent(self.id, "GET", self.url, self.attempt, self.stream_id))

    def received(self, status: int, headers: CIMultiDictProxy[str], size: int) -> None:
        """`ResponseReceived`, for a response read whole."""
        event = ResponseReceived(
            self.id,
            "GET",
            self.url,
            self.attempt,
            status,
            elapsed=time.perf_counter() - self._started,
            size=size,
            request_id=headers.get("Twilio-Request-Id"),
            concurrent_requests=concurrent_requests(headers),
            stream_id=self.stream_id,
        )
        emit(self._hooks, event)

    def failed(self, failure: BaseException | None) -> None:
        """`RequestFailed`, for an attempt that got no whole response."""
        error = failure if failure is not None else FlexError("the request failed")
        elapsed = time.perf_counter() - self._started
        emit(
            self._hooks,
            RequestFailed(self.id, "GET", self.url, self.attempt, elapsed, error, self.stream_id),
        )

    def retry_scheduled(self, delay: float, error: FlexError) -> None:
        """`RetryScheduled`: this attempt failed and will be sent again after ``delay``."""
        emit(
            self._hooks,
            RetryScheduled(self.id, self.url, self.attempt, delay, error, self.stream_id),
        )


class ClientEvents:
    """What a client with hooks tells them: it numbers requests and streams, and tells each
    change of its limiter once."""

    __slots__ = ("_hooks", "_last_limits", "_limiter", "_request_ids", "_stream_ids")

    def __init__(self, hooks: tuple[Hook, ...], limiter: object) -> None:
        self._hooks = hooks
        self._limiter = limiter
        self._request_ids = itertools.count(1)
        self._stream_ids = itertools.count(1)
        self._last_limits = read_limits(limiter)

    def request(self, url: str, attempt: int, stream_id: int | None) -> RequestEvents:
        """The events of a new attempt, with an ``id`` of its own."""
        return RequestEvents(self._hooks, next(self._request_ids), url, attempt, stream_id)

    def stream_opened(self, interaction_sid: str, channel_sid: str) -> StreamEvents:
        """`StreamOpened` for a new stream, and what that stream will tell."""
        events = StreamEvents(self._hooks, next(self._stream_ids), interaction_sid, channel_sid)
        events.opened()
        return events

    def limits_read(self) -> None:
        """`LimitChanged`, once per change: the level moved, or the rate by 1% or more since
        the last event (a rate probing upwards moves a little with every request)."""
        now = read_limits(self._limiter)
        level, rate = now
        last_level, last_rate = self._last_limits
        if level == last_level and (
            rate == last_rate
            or (
                rate is not None
                and last_rate is not None
                and abs(rate - last_rate) < 0.01 * last_rate
            )
        ):
            return
        self._last_limits = now
        emit(self._hooks, LimitChanged(level, rate))
