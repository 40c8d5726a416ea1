"""The whole exception hierarchy, and the one place that maps aiohttp's errors onto it."""

from __future__ import annotations

import contextlib
import copyreg
from collections.abc import Iterator
from typing import Any

import aiohttp
from aiohttp import RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "AuthenticationError",
    "ClientClosedError",
    "DeadlineExceededError",
    "FlexAPIError",
    "FlexError",
    "InvalidArgumentError",
    "InvalidResponseError",
    "NotFoundError",
    "RateLimitError",
    "ResponseTooLargeError",
    "ServerError",
    "TransportError",
    "UnsafeURLError",
]


class FlexError(Exception):
    """Base class of every error this SDK raises.

    ``attempts`` is how many HTTP attempts were made before the error was raised
    (0 when it was raised before any request was sent).
    """

    attempts: int = 0

    def __init__(self, message: str, *, attempts: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts

    def __str__(self) -> str:
        if self.attempts > 1:
            return f"{self.message} (after {self.attempts} attempts)"
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls ``cls(*args)``, which keyword-only arguments break;
        # rebuild without __init__ instead, then restore every attribute from __dict__.
        # This serves every subclass, including those users define.
        rebuild = copyreg.__newobj__  # type: ignore[attr-defined]
        return (rebuild, (type(self), *self.args), self.__dict__)


# Errors in what the caller asked for, raised before anything is sent.


class InvalidArgumentError(FlexError, ValueError):
    """An argument is malformed: a SID, a page size, a limit, a URL or the credentials."""


class UnsafeURLError(FlexError):
    """A URL points outside the client's origin, so credentials will not be sent to it."""


# Errors of the client's own life.


class ClientClosedError(FlexError):
    """The client was closed before, or while, a stream, batch or request was under way.

    What was delivered before it is complete and correct; what would have come after it
    was not fetched.
    """


class DeadlineExceededError(FlexError):
    """A call's ``deadline=`` ran out before it was done (its retries, backoffs and waits for
    the limiter included); what the call was still doing was given up.

    Attributes:
        deadline: the call's deadline, in seconds.
        url: the URL whose request was under way or about to be retried, or ``None``.
    """

    def __init__(
        self, message: str, *, deadline: float, url: str | None = None, attempts: int = 0
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.deadline = deadline
        self.url = url


# Errors the API answered with.


class FlexAPIError(FlexError):
    """The API answered with an HTTP error status.

    Attributes:
        status: the HTTP status code.
        code: Twilio's error code from the body (for example 20404), or ``None``.
        message: Twilio's message, or a description of the response when the body had none.
        more_info: the link to Twilio's page about the error code, or ``None``.
        url: the URL that was requested.
        retry_after: the wait in seconds a 429 or 503 asked for with ``Retry-After``, or
            ``None``.
    """

    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int,
        url: str,
        code: int | None = None,
        more_info: str | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.status = status
        self.code = code
        self.more_info = more_info
        self.url = url

    def __str__(self) -> str:
        code = f" [code {self.code}]" if self.code is not None else ""
        return f"HTTP {self.status}{code} from {self.url}: {super().__str__()}"


# What to check, told with the errors a newcomer meets first: Twilio's own messages
# ("Authenticate", "The requested resource ... was not found") name neither.
_REFUSED = (
    "check the credentials: the account SID and auth token (TWILIO_ACCOUNT_SID, "
    "TWILIO_AUTH_TOKEN), or the API key and its secret (TWILIO_API_KEY, TWILIO_API_SECRET), "
    "which are used when both pairs are set"
)
_FORBIDDEN = (
    "the credentials lack access to the Interactions API: a restricted API key needs it granted"
)
_NOT_FOUND = (
    "no such interaction channel for these credentials: check that the interaction SID "
    "(KD...) and the channel SID (UO...) in the URL are one interaction's and one of its "
    "channels, of this account"
)


class AuthenticationError(FlexAPIError):
    """The credentials were refused (HTTP 401) or lack access to the resource (HTTP 403).

    Its message says what to check.
    """

    def __str__(self) -> str:
        return f"{super().__str__()}; {_FORBIDDEN if self.status == 403 else _REFUSED}"


class NotFoundError(FlexAPIError):
    """The interaction or the channel does not exist (HTTP 404). Its message says what to
    check."""

    def __str__(self) -> str:
        return f"{super().__str__()}; {_NOT_FOUND}"


class RateLimitError(FlexAPIError):
    """Too many requests (HTTP 429); ``retry_after`` holds the server's hint in seconds, if any."""


class ServerError(FlexAPIError):
    """The server or a proxy in front of it failed (HTTP 5xx)."""


# Errors below HTTP, and answers that are not what the API promises.


class TransportError(FlexError):
    """The request failed below HTTP: connection refused or reset, or a timeout."""


class InvalidResponseError(FlexError):
    """A response was not what the API promises: bad JSON, a wrong shape, or a wrong type.

    Attributes:
        url: the URL that was requested.
        status: the HTTP status of the response.
        is_json: whether the body was JSON (of the wrong shape); a body that is not JSON at
            all (cut off, empty, an HTML page) is retried, a JSON body of the wrong shape is not.
    """

    def __init__(
        self, message: str, *, url: str, status: int, is_json: bool = False, attempts: int = 0
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.url = url
        self.status = status
        self.is_json = is_json

    def __str__(self) -> str:
        return f"invalid response (HTTP {self.status}) from {self.url}: {super().__str__()}"


class ResponseTooLargeError(InvalidResponseError):
    """A response body was larger than the client's ``max_body_size`` (counted after
    decompression); it was not read further, and is not retried."""


# The mapping of aiohttp's errors, with the credentials taken out of what they keep.

# Headers that carry credentials: they must not outlive the request in any error.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})


def _without_secrets(info: RequestInfo) -> RequestInfo:
    headers = info.headers
    if _SECRET_HEADERS.isdisjoint(name.lower() for name in headers):
        return info
    kept = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _SECRET_HEADERS)
    return RequestInfo(info.url, info.method, CIMultiDictProxy(kept), info.real_url)


def _scrub_response(response: aiohttp.ClientResponse) -> None:
    # ``request_info`` is a cached property over ``_request_info``: replace the value, and
    # forget what the cache holds. The redirect-history test proves this still reaches it.
    response._request_info = _without_secrets(response._request_info)
    cache = getattr(response, "_cache", None)
    if isinstance(cache, dict):
        cache.pop("request_info", None)


def _scrub_credentials(error: BaseException) -> None:
    """Drop the credentials from the request headers aiohttp keeps in an error and its chain.

    aiohttp's response errors hold the `RequestInfo` of the request, headers and all, in
    ``request_info``, in ``args`` and in each response of ``history``; our errors chain
    them as their cause, and whatever reaches a log or an error tracker must not carry the
    ``Authorization`` header. The rest is kept, for debugging.
    """
    pending, seen = [error], set()
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        info = getattr(exc, "request_info", None)
        if isinstance(info, RequestInfo):
            exc.request_info = _without_secrets(info)  # type: ignore[attr-defined]
        if any(isinstance(arg, RequestInfo) for arg in exc.args):
            exc.args = tuple(
                _without_secrets(arg) if isinstance(arg, RequestInfo) else arg for arg in exc.args
            )
        history = getattr(exc, "history", None)
        if isinstance(history, tuple):
            for response in history:
                if isinstance(response, aiohttp.ClientResponse):
                    _scrub_response(response)
        pending.extend(c for c in (exc.__cause__, exc.__context__) if c is not None)
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)


@contextlib.contextmanager
def _transport_errors(url: str) -> Iterator[None]:
    """Map aiohttp's and asyncio's failures below HTTP onto `TransportError`.

    Every error that leaves the block, mapped or not, has its chain scrubbed of credentials
    first (see `_scrub_credentials`).
    """
    try:
        yield
    except TimeoutError as exc:
        _scrub_credentials(exc)
        raise TransportError(f"request to {url} timed out") from exc
    except aiohttp.ClientError as exc:
        _scrub_credentials(exc)
        raise TransportError(f"request to {url} failed: {exc or type(exc).__name__}") from exc
    except BaseException as exc:
        _scrub_credentials(exc)
        raise
