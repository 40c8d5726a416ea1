"""The whole exception hierarchy, and the one place that maps aiohttp's errors onto it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiohttp

__all__ = [
    "AuthenticationError",
    "ClientClosedError",
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


class AuthenticationError(FlexAPIError):
    """The credentials were refused (HTTP 401) or lack access to the resource (HTTP 403)."""


class NotFoundError(FlexAPIError):
    """The interaction or the channel does not exist (HTTP 404)."""


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


@contextlib.contextmanager
def _transport_errors(url: str) -> Iterator[None]:
    """Map aiohttp's and asyncio's failures below HTTP onto `TransportError`."""
    try:
        yield
    except TimeoutError as exc:
        raise TransportError(f"request to {url} timed out") from exc
    except aiohttp.ClientError as exc:
        raise TransportError(f"request to {url} failed: {exc or type(exc).__name__}") from exc
