"""FlexClient: the origin, the one session, the limiter, and the request + retry loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import ssl
import time
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Literal, Self

import aiohttp
from yarl import URL

from ._arguments import check_count, check_quantity
from ._batch import ChannelBatch, Channels
from ._credentials import resolve_credentials
from ._cursor import encode_cursor, resume
from ._errors import (
    ClientClosedError,
    FlexAPIError,
    FlexError,
    InvalidArgumentError,
    TransportError,
    _transport_errors,
)
from ._events import ClientEvents, ClientStats, Event, RequestEvents, check_hooks, read_limits
from ._interrupt import Interrupts, uninterrupted
from ._limit import (
    FIXED_CONCURRENCY,
    MAX_CONCURRENCY,
    AdaptiveLimiter,
    Limiter,
    Throttle,
    check_rate_limit,
    limiter_errors,
    takes_throttle,
)
from ._models import Participant, ParticipantPage
from ._network import (
    check_session,
    check_trace_configs,
    refused_by_aiohttp,
    route_to,
    sent_trace_config,
    when_sent,
)
from ._options import CallOptions, call_options
from ._request import (
    DEFAULT_PAGE_SIZE,
    build_base_url,
    channel_of,
    check_limit,
    check_page_size,
    check_same_origin,
    check_sids,
    participants_url,
)
from ._response import (
    FetchedPage,
    concurrent_requests,
    decode_response,
    error_from_response,
    read_body,
)
from ._retry import RetryPolicy
from ._stream import ParticipantStream
from ._version import __version__

__all__ = ["FlexClient"]

logger = logging.getLogger("flex_participants")

_USER_AGENT = f"flex-participants/{__version__} aiohttp/{aiohttp.__version__}"

# A page of 1,000 participants is about 0.4 MiB; twenty times that is no page.
DEFAULT_MAX_BODY_SIZE = 8 * 1024 * 1024

_Channel = tuple[str, str]

# The shortest wait before retrying a 429 that does not count towards max_attempts.
_THROTTLED_MIN_WAIT = 0.1


def _reason(error: FlexError) -> str:
    """A few words on why an attempt failed, for the retry warning (the URL is already in it)."""
    if isinstance(error, FlexAPIError):
        return f"HTTP {error.status}"
    if isinstance(error, TransportError):
        cause = error.__cause__
        return f"{type(cause).__name__}: {cause}" if cause is not None else error.message
    return error.message


class FlexClient:
    """An asyncio client for Flex's "List all Participants for a Channel" endpoint.

    One client owns one `aiohttp.ClientSession`, the credentials, the retry policy and one
    concurrency limit shared by everything it does: every stream, prefetch and batch. Use it
    as ``async with FlexClient(...) as client:``, or call `close` when done.

    Args:
        account_sid: the account SID; default ``TWILIO_ACCOUNT_SID``.
        auth_token: the auth token; default ``TWILIO_AUTH_TOKEN``.
        api_key: an API key SID; default ``TWILIO_API_KEY``. With ``api_secret`` it is the
            Basic-auth pair, as in the official SDK.
        api_secret: the API key's secret; default ``TWILIO_API_SECRET``.
        base_url: the API's origin; default ``FLEX_PARTICIPANTS_BASE_URL``, else
            ``https://flex-api.twilio.com``. ``http://`` is accepted only for loopback hosts
            (an emulator, tests).
        region: Twilio region (default ``TWILIO_REGION``): ``us1``, the only one Flex runs
            in, with ``edge``; alone it warns (`FlexHostWarning`) and the default host is
            used. Ignored when ``base_url`` is given.
        edge: Twilio edge location (default ``TWILIO_EDGE``), giving
            ``https://flex-api.{edge}.us1.twilio.com``; implies region ``us1`` if none.
        max_concurrency: the most HTTP requests this client has in flight at once. Default:
            with the client's own rate (``rate_limit``), as many as that rate needs at the
            answer time measured (rate x latency, Little's law), up to 500 (200
            requests/s at 2 s answers, with room); without a rate, or with a
            ``limiter`` of one's own, 10.
        timeout: seconds one attempt may take, connection and body included.
        retry: the `RetryPolicy`; default ``RetryPolicy()``.
        session: an aiohttp session to use; it is never closed by the client. It may not
            have ``auth=``, nor ``trust_env=True`` with credentials for the origin's host in
            the ``.netrc`` it reads (aiohttp would refuse every request that carries the
            client's own). With ``auto_decompress=False``, uncompressed bodies are asked for.
        proxy: an ``http://`` proxy URL every request goes through (an ``https`` origin is
            reached with ``CONNECT``, TLS end to end). Credentials in it
            (``http://user:password@host:port``) go to the proxy alone, as
            ``Proxy-Authorization``; they never appear in a repr, an error or a log line.
        ssl: an `ssl.SSLContext` to verify the origin with, such as one that trusts a
            corporate CA; default: the system's CAs. Verification cannot be turned off.
        trust_env: use the proxy that ``HTTPS_PROXY`` (``HTTP_PROXY`` for a loopback
            ``http`` origin) and ``NO_PROXY`` give for the origin, read when the client is
            made; an explicit ``proxy`` wins. ``.netrc`` is never read: the credentials are
            the client's own. Works with ``session=`` too.
        rate_limit: the requests started per second, shared by everything the client does.
            ``"adaptive"`` (the default): the budget is not known; the client starts at
            Twilio's documented 20 per second, raises it while nothing is refused, lowers it
            on 429s to what the server was seen to accept, and holds the rate that works. A number: the budget is known; a token bucket of
            that rate and ``burst`` (429s still slow it below, never above). ``None``: no
            rate limit, only ``max_concurrency``.
        burst: how many requests the rate's bucket lets start at once after a pause;
            default a fifth of a second of the rate, 1 to 4 (4 at 20 per second and above).
        limiter: a `Limiter` to use instead of the client's own (``max_concurrency`` and
            ``rate_limit`` then only size the batch window). An exception it raises fails
            the request as a `FlexError`. Its ``release`` is awaited to its end even when
            `close`, a deadline or a cancellation lands during it.
        max_body_size: the largest response body read, in bytes after decompression
            (default 8 MiB); a larger one fails its request with `ResponseTooLargeError`.
        hooks: callables, each called with every event of the client (see the events, such
            as `RequestSent`), synchronously, in the task that caused it. One that raises is
            logged on the ``flex_participants`` logger and the request goes on.
        trace_configs: `aiohttp.TraceConfig` objects for the session the client makes, so
            that aiohttp's own request tracing (and instrumentation built on it) plugs in;
            not with ``session=``, whose own trace configs are used. They come before the
            client's own, which tells the rate's bucket when each request goes out.

    Each call (`participants`, `fetch_page`, `fetch_page_url`, `participants_for_channels`)
    takes three options of its own, each defaulting to the client's: ``timeout``, the seconds
    one attempt may take; ``retry``, the `RetryPolicy`; and ``deadline``, the seconds for the
    whole call: its requests, retries, backoffs and waits for the limiter (default: none).
    When the deadline runs out the call fails with `DeadlineExceededError`; a backoff that
    would end past it fails at once.

    A client belongs to the event loop it is first used in; using it from another raises
    `FlexError`.

    Raises:
        InvalidArgumentError: (a `ValueError`) no usable credentials, a bad URL (the origin's
            or the proxy's), a region other than ``us1`` (Flex runs in US1 only), an ``ssl``
            that is no `ssl.SSLContext`, a ``session`` it cannot use (see above), or a
            number out of range (a ``bool``, NaN or infinity is no number here).
    """

    def __init__(
        self,
        account_sid: str | None = None,
        auth_token: str | None = None,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        base_url: str | None = None,
        region: str | None = None,
        edge: str | None = None,
        max_concurrency: int | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        proxy: str | None = None,
        ssl: ssl.SSLContext | None = None,
        trust_env: bool = False,
        rate_limit: float | Literal["adaptive"] | None = "adaptive",
        burst: int | None = None,
        limiter: Limiter | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        hooks: Iterable[Callable[[Event], object]] | None = None,
        trace_configs: Iterable[aiohttp.TraceConfig] | None = None,
    ) -> None:
        environ = os.environ
        self._credentials = resolve_credentials(
            account_sid, auth_token, api_key, api_secret, environ
        )
        self._origin = build_base_url(
            base_url or environ.get("FLEX_PARTICIPANTS_BASE_URL") or None,
            region or environ.get("TWILIO_REGION") or None,
            edge or environ.get("TWILIO_EDGE") or None,
        )
        self._route = route_to(self._origin, proxy=proxy, ssl=ssl, trust_env=trust_env)
        if max_concurrency is not None:
            check_count("max_concurrency", max_concurrency, minimum=1)
        timeout = check_quantity("timeout", timeout, strict=True, unit="seconds")
        self._max_body_size = check_count("max_body_size", max_body_size, minimum=1)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidArgumentError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        session = check_session(session, self._origin)
        rate_limit, burst = check_rate_limit(rate_limit, burst)
        if max_concurrency is None:
            follows = limiter is None and rate_limit is not None
            max_concurrency = MAX_CONCURRENCY if follows else FIXED_CONCURRENCY
        if limiter is None:
            limiter = AdaptiveLimiter(max_concurrency, rate_limit=rate_limit, burst=burst)
        elif not isinstance(limiter, Limiter):
            raise InvalidArgumentError(
                f"limiter must implement Limiter, got {type(limiter).__name__}"
            )
        self._takes_throttle = takes_throttle(limiter)
        self._max_concurrency = max_concurrency
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry = retry if retry is not None else RetryPolicy()
        # What a call uses unless it sets its own timeout=, retry= or deadline=.
        self._options = CallOptions(timeout=self._timeout, retry=self._retry)
        self._limiter = limiter
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Tasks waiting inside a request, which close() ends; and the tasks close() cancelled
        # and waits for (prefetches, batch workers), kept should a cancelled close() be called
        # again.
        self._interrupts = Interrupts()
        self._closing: list[asyncio.Task[None]] = []
        self._streams: weakref.WeakSet[ParticipantStream] = weakref.WeakSet()
        self._batches: weakref.WeakSet[ChannelBatch] = weakref.WeakSet()
        self._headers = {
            "Authorization": self._credentials.header(),
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }
        self._headers.update(self._route.headers)
        if session is not None and not session.auto_decompress:
            # Such a session hands a gzip body over as it came, which is no JSON: ask for none.
            self._headers["Accept-Encoding"] = "identity"
        self.requests_sent = 0
        """How many HTTP attempts this client has made."""
        self.retries = 0
        """How many of them were retries."""
        # -- observing: the hooks, and the counters of stats() -----------------------
        checked_hooks = check_hooks(hooks)
        self._events = ClientEvents(checked_hooks, limiter) if checked_hooks else None
        self._trace_configs = check_trace_configs(trace_configs, session)
        self._throttled = 0
        self._in_flight = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<FlexClient {state} base_url={str(self._origin)!r} "
            f"username={self._credentials.username!r} max_concurrency={self._max_concurrency}>"
        )

    @property
    def base_url(self) -> str:
        """The origin every request goes to, and the only one that receives the credentials."""
        return str(self._origin)

    @property
    def limiter(self) -> Limiter:
        """The limiter every request of this client passes through."""
        return self._limiter

    @property
    def max_concurrency(self) -> int:
        """The most requests in flight at once."""
        return self._max_concurrency

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._closed

    def stats(self) -> ClientStats:
        """A snapshot of what the client has done so far, and of its limiter now.

        Cheap enough to call on every tick of a progress bar; the counters are kept whether
        or not the client has hooks.
        """
        level, rate = read_limits(self._limiter)
        return ClientStats(
            requests=self.requests_sent,
            retries=self.retries,
            throttled=self._throttled,
            in_flight=self._in_flight,
            level=level,
            rate=rate,
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._get_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """End everything the client is doing, then close the session if the client made it.

        Every stream and batch still open, and every request under way, in any task, ends at
        once: a consumer waiting in ``async for`` gets `ClientClosedError` (a stream that had
        already ended stays ended), and so does every later use of the client. Idempotent;
        a ``close()`` that was itself cancelled finishes its work when called again. A
        session passed in as ``session=`` is left open.
        """
        if not self._closed:
            self._closed = True
            for stream in list(self._streams):
                self._closing.extend(stream._close_by_client())
            for batch in list(self._batches):
                self._closing.extend(batch._close_by_client())
            self._interrupts.interrupt()
        pending = [task for task in self._closing if not task.done()]
        if pending:
            await asyncio.wait(pending)
        self._closing.clear()
        session = self._session
        if session is not None and self._owns_session and not session.closed:
            await session.close()
        self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("this FlexClient is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise FlexError(
                "this FlexClient is used in another event loop than the one it was first used "
                "in; make one client per event loop"
            )
        if self._session is None:
            # Made here, inside the running loop, on first use. Without trust_env: the route
            # has the proxy already, and aiohttp's would read .netrc too (see _network).
            connector = aiohttp.TCPConnector(limit=self._max_concurrency, limit_per_host=0)
            # Ours last: the limiter hears when each request goes out (see `_attempt`),
            # after whatever the caller's own trace configs do first.
            trace_configs = [*(self._trace_configs or ()), sent_trace_config()]
            self._session = aiohttp.ClientSession(connector=connector, trace_configs=trace_configs)
        elif self._session.closed:
            raise ClientClosedError("the aiohttp session of this FlexClient is closed")
        return self._session

    # -- public operations --------------------------------------------------------------

    def participants(
        self,
        interaction_sid: str,
        channel_sid: str,
        *,
        page_size: int | None = None,
        limit: int | None = None,
        prefetch: int = 1,
        cursor: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        deadline: float | None = None,
    ) -> ParticipantStream:
        """Stream the participants of one channel.

        ``async for participant in client.participants(kd, uo)`` yields them in server order,
        while the next page is already being requested.

        Args:
            interaction_sid: the interaction SID, ``KD`` and 32 hex digits.
            channel_sid: the channel SID, ``UO`` and 32 hex digits.
            page_size: participants per page, 1 to 1000; default: the server's (50). With a
                ``cursor``, the default is the page size of the stream it came from.
            limit: stop after this many participants; ``None`` for all.
            prefetch: how many pages to request ahead of the one being consumed; 0 for none.
            cursor: a `ParticipantStream.cursor` of this channel and client origin: the stream
                goes on right after the last participant that stream delivered.
            timeout, retry, deadline: this call's own (see `FlexClient`); the deadline runs
                from the stream's first request to its end.

        Raises:
            InvalidArgumentError: (a `ValueError`, raised here, before any request) a bad SID,
                page size, limit, prefetch, timeout, retry or deadline; a cursor that is
                mangled or was made for another channel, origin or endpoint.
            FlexError: raised by the iteration, for the page that failed.
        """
        channel = check_sids(interaction_sid, channel_sid)
        page_size = check_page_size(page_size)
        limit = check_limit(limit)
        check_count("prefetch", prefetch, minimum=0)
        options = call_options(self._options, timeout=timeout, retry=retry, deadline=deadline)
        skip, ended = 0, False
        if cursor is None:
            if limit is not None and limit < (page_size or DEFAULT_PAGE_SIZE):
                page_size = max(limit, 1)
            url = participants_url(self._origin, *channel, page_size=page_size)
        else:
            start, skip = resume(cursor, self._origin, channel, page_size=page_size)
            ended = start is None
            url = start or participants_url(self._origin, *channel)
        events = self._events.stream_opened(*channel) if self._events else None
        stream = ParticipantStream(
            functools.partial(
                self._fetch,
                channel=channel,
                stream_id=events.stream_id if events else None,
                options=options,
            ),
            url,
            limit=limit,
            prefetch=prefetch,
            closed=self._closed,
            observer=events,
            cursor_of=functools.partial(encode_cursor, origin=self._origin, channel=channel),
            skip=skip,
            ended=ended,
        )
        # Known from the start, so that close() reaches it even before it is iterated.
        self._streams.add(stream)
        return stream

    async def fetch_page(
        self,
        interaction_sid: str,
        channel_sid: str,
        *,
        page_size: int | None = None,
        page: int | None = None,
        page_token: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per attempt, as the client's timeout=
        retry: RetryPolicy | None = None,
        deadline: float | None = None,
    ) -> ParticipantPage:
        """Fetch one page, for callers that keep their own cursor.

        Args:
            interaction_sid: the interaction SID.
            channel_sid: the channel SID.
            page_size: participants per page, 1 to 1000; default: the server's.
            page: the page index (``Page``), as the API's own URLs carry it.
            page_token: the ``PageToken`` from a ``next_page_url``.
            timeout, retry, deadline: this call's own (see `FlexClient`).

        Raises:
            InvalidArgumentError: a bad argument, before any request.
            DeadlineExceededError: the ``deadline`` ran out.
            FlexError: the request failed after its retries.
        """
        channel = check_sids(interaction_sid, channel_sid)
        options = call_options(self._options, timeout=timeout, retry=retry, deadline=deadline)
        url = participants_url(
            self._origin,
            *channel,
            page_size=check_page_size(page_size),
            page=page,
            page_token=page_token,
        )
        return (await self._fetch(url, channel, options=options)).build()

    async def fetch_page_url(
        self,
        url: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - per attempt, as the client's timeout=
        retry: RetryPolicy | None = None,
        deadline: float | None = None,
    ) -> ParticipantPage:
        """Fetch the page at ``url``: a ``meta.next_page_url`` (or any page URL) of this origin.

        A relative ``url`` is resolved against the client's origin.

        Args:
            url: the page's URL.
            timeout, retry, deadline: this call's own (see `FlexClient`).

        Raises:
            UnsafeURLError: ``url`` is not on the client's origin (another host, scheme or
                port, no host at all, or credentials of its own); nothing is sent.
            InvalidArgumentError: ``url`` is not a URL, or not one of a channel's participants;
                a bad timeout, retry or deadline.
            DeadlineExceededError: the ``deadline`` ran out.
            FlexError: the request failed after its retries.
        """
        options = call_options(self._options, timeout=timeout, retry=retry, deadline=deadline)
        try:
            parsed = check_same_origin(URL(url), self._origin)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, FlexError):
                raise
            raise InvalidArgumentError(f"not a URL: {url!r} ({exc})") from None
        channel = channel_of(parsed, self._origin)
        return (await self._fetch(parsed, channel, options=options)).build()

    def participants_for_channels(
        self,
        channels: Channels,
        *,
        page_size: int | None = None,
        concurrency: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        deadline: float | None = None,
    ) -> ChannelBatch:
        """Fetch many channels concurrently; yield a `ChannelResult` for each as it completes.

        ``channels`` is read lazily, as capacity frees up, so it may be a generator of any
        length. A channel that fails yields a result with ``error`` set; the batch goes on.

        Args:
            channels: an iterable or async iterable of ``(interaction_sid, channel_sid)``.
            page_size: participants per page for every channel.
            concurrency: how many channels are fetched at once. Default: as many as the
                client's own limiter lets into flight now, and one more (its ``level``,
                which follows the rate and the answer time), never more than
                ``max_concurrency``; with a limiter of one's own, ``max_concurrency``.
                Requests in flight stay bounded by the client's limit either way.
            timeout, retry, deadline: each channel's own (see `FlexClient`); the deadline
                runs from that channel's first request. A channel that runs out has a
                `DeadlineExceededError` as its result's ``error``, and the batch goes on; to
                bound the whole batch, wrap the loop in ``asyncio.timeout``.

        Raises:
            InvalidArgumentError: a bad ``page_size``, ``concurrency``, ``timeout``, ``retry``
                or ``deadline``, or ``channels`` is not iterable; raised here, before any
                request.
        """
        page_size = check_page_size(page_size)
        follow = None
        if concurrency is None:
            concurrency = self._max_concurrency
            limiter = self._limiter
            if isinstance(limiter, AdaptiveLimiter):
                follow = lambda: limiter.level + 1  # noqa: E731 - one line, one name
        check_count("concurrency", concurrency, minimum=1)
        call_options(self._options, timeout=timeout, retry=retry, deadline=deadline)

        async def collect(interaction_sid: str, channel_sid: str) -> tuple[Participant, ...]:
            stream = self.participants(
                interaction_sid,
                channel_sid,
                page_size=page_size,
                prefetch=0,
                timeout=timeout,
                retry=retry,
                deadline=deadline,
            )
            return tuple(await stream.collect())

        batch = ChannelBatch(channels, collect, window=concurrency, follow=follow)
        if self._closed:
            batch._close_by_client()
        self._batches.add(batch)
        return batch

    # -- one page, with retries ---------------------------------------------------------

    async def _fetch(
        self,
        url: URL,
        channel: _Channel,
        *,
        stream_id: int | None = None,
        options: CallOptions | None = None,
    ) -> FetchedPage:
        url = check_same_origin(url, self._origin)
        options = options or self._options
        policy = options.retry
        attempt = 0
        uncounted = 0  # 429s retried within the policy's patience
        loop = asyncio.get_running_loop()
        began = loop.time()
        with self._interrupts.wait(), options.scope(url) as deadline:
            while True:
                attempt += 1
                deadline.attempts = attempt
                events = (
                    self._events.request(str(url), attempt, stream_id) if self._events else None
                )
                try:
                    return await self._attempt(
                        url, attempt, channel, events=events, attempt_timeout=options.timeout
                    )
                except FlexError as error:
                    error.attempts = attempt
                    if not policy.should_retry(error):
                        raise
                    counted = policy.counts(error, loop.time() - began)
                    if not counted:
                        uncounted += 1
                    elif attempt - uncounted >= policy.max_attempts:
                        raise
                    retry_after = error.retry_after if isinstance(error, FlexAPIError) else None
                    delay = policy.delay(attempt, retry_after)
                    which, note = f"attempt {attempt - uncounted} of {policy.max_attempts}", ""
                    if not counted:
                        # Never at once: with no rate to wait for (rate_limit=None, a limiter
                        # of one's own) and no backoff, 429s would be retried in a busy loop.
                        delay = max(delay, _THROTTLED_MIN_WAIT)
                        which, note = f"attempt {attempt}", "; within patience, not counted"
                    deadline.check_backoff(delay, error)  # fails now rather than after the wait
                    # INFO: a throttled batch retries many 429s, none worth a warning.
                    logger.info(
                        "retrying GET %s in %.3f s (%s failed: %s%s)",
                        url,
                        delay,
                        which,
                        _reason(error),
                        note,
                    )
                    self.retries += 1
                    if events is not None:
                        events.retry_scheduled(delay, error)
                # The slot was released before this sleep: a waiting retry holds no capacity.
                await asyncio.sleep(delay)
        # Only an interrupt by close() leaves the loop.
        raise ClientClosedError(f"the client was closed while requesting {url}", attempts=attempt)

    async def _give_back(self, permit: object, throttled: bool, throttle: Throttle | None) -> None:
        with limiter_errors(self._limiter, "take a slot back"):
            if self._takes_throttle:
                # Only a limiter whose release takes it is given what the 429 said.
                release: Any = self._limiter.release
                await release(permit, throttled=throttled, throttle=throttle)
            else:
                await self._limiter.release(permit, throttled=throttled)

    def _when_sent(self, permit: object) -> contextlib.AbstractContextManager[None]:
        # The client's own limiter hears when the request went out, from a session it
        # made: its rate's schedule then follows the server's (`_Bucket.sent`).
        limiter = self._limiter
        if type(limiter) is AdaptiveLimiter and (clock := limiter._send_clock(permit)):
            return when_sent(clock)
        return contextlib.nullcontext()

    async def _attempt(
        self,
        url: URL,
        attempt: int,
        channel: _Channel,
        *,
        events: RequestEvents | None = None,
        attempt_timeout: aiohttp.ClientTimeout | None = None,
    ) -> FetchedPage:
        self._get_session()  # a closed client fails before it waits for a slot
        with limiter_errors(self._limiter, "give a slot"):
            permit = await self._limiter.acquire()
        self._in_flight += 1
        told = False  # whether the hooks were told of this request: then of its end too
        failure: BaseException | None = None
        status: int | str = "error"
        started = time.perf_counter()
        url_text = str(url)
        finished = False
        api_error: FlexAPIError | None = None
        throttle: Throttle | None = None
        try:
            # Asked again after the wait for a slot: the session may have closed meanwhile.
            session = self._get_session()
            self.requests_sent += 1
            if events is not None:
                told = True
                events.sent()
            with (
                refused_by_aiohttp(url_text, session),
                _transport_errors(url_text),
                self._when_sent(permit),
            ):
                async with session.get(
                    url,
                    headers=self._headers,
                    allow_redirects=False,
                    # A borrowed session may raise on error statuses by default; the typed
                    # errors, and the choice of what to retry, are made here.
                    raise_for_status=False,
                    timeout=attempt_timeout or self._timeout,
                    **self._route.options,  # proxy=, proxy_headers=, ssl=
                ) as response:
                    status = response.status
                    headers = response.headers
                    reason = response.reason
                    body = await read_body(response, self._max_body_size, url_text)
            if status >= 400:
                api_error = error_from_response(url_text, status, reason, headers, body)
                if status == 429:
                    throttle = Throttle(
                        code=api_error.code,
                        retry_after=api_error.retry_after,
                        concurrent_requests=concurrent_requests(headers),
                    )
            finished = True
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._in_flight -= 1
            if status == 429:
                self._throttled += 1
            try:
                if type(self._limiter) is AdaptiveLimiter:
                    # In one step, which nothing can land in the middle of.
                    self._limiter._release_now(
                        permit,
                        throttled=status == 429,
                        throttle=throttle,
                        answered=status is not None,
                    )
                else:
                    # To its end, even if close(), a deadline or a cancellation lands
                    # meanwhile: a slot not given back is lost (to the whole fleet, with Redis).
                    await uninterrupted(
                        self._give_back(permit, status == 429, throttle), "give a slot back"
                    )
            except FlexError:
                if finished:
                    raise
                # Another error is on its way out (a cancellation included): it must not be
                # replaced by the limiter's, which is logged instead.
                logger.exception("the limiter failed to take a slot back")
            finally:
                # The one end event of the request, however the release went. The slot is
                # back before any hook runs: a hook that raises what `emit` lets through (a
                # cancellation, KeyboardInterrupt) can cost no slot.
                if told:
                    assert events is not None
                    assert self._events is not None
                    try:
                        if finished:
                            assert isinstance(status, int)
                            events.received(status, headers, len(body))
                        else:
                            events.failed(failure)
                    finally:
                        self._events.limits_read()
                logger.debug(
                    "GET %s -> %s (attempt %d, %.1f ms)",
                    url_text,
                    status,
                    attempt,
                    (time.perf_counter() - started) * 1000,
                )
        if api_error is not None:
            raise api_error
        assert isinstance(status, int)
        return decode_response(url_text, status, headers, body, channel)
