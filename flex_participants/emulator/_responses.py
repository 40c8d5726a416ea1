"""What the emulator answers with: JSON bodies, Twilio's error bodies, and sending a response."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

__all__ = [
    "HTML_BAD_GATEWAY",
    "PAGE_HEADERS",
    "dumps",
    "format_retry_after",
    "json_response",
    "loads",
    "page_response",
    "send",
    "twilio_error",
]


def _dumps_std(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


dumps: Callable[[Any], bytes]
loads: Callable[[bytes | str], Any] = json.loads
try:
    import orjson
except ImportError:  # pragma: no cover - orjson is an optional speed-up
    dumps = _dumps_std
else:
    dumps = orjson.dumps

_MORE_INFO = "https://www.twilio.com/docs/errors/{code}"

# Twilio's error code for an HTTP status, where it has a well-known one.
_CODE_BY_STATUS: Final = {
    400: 20001,
    401: 20003,
    403: 20403,
    404: 20404,
    405: 20004,
    429: 20429,
    500: 20500,
    503: 20503,
}

_MESSAGE_BY_STATUS: Final = {
    401: "Authenticate",
    404: "The requested resource was not found",
    405: "Method not allowed",
    429: "Too many requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

HTML_BAD_GATEWAY: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
"""The page a reverse proxy sends when the service behind it fails."""


def format_retry_after(seconds: float) -> str:
    """``Retry-After`` for a number of seconds: an integer when it is one, else a decimal."""
    if seconds == math.floor(seconds):
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0")


def json_response(
    body: bytes, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A response with ``body`` as ``application/json`` (no charset, as Twilio sends it)."""
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


PAGE_HEADERS: Final = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET",
    "Access-Control-Allow-Headers": "Accept, Authorization, Content-Type, User-Agent",
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Expose-Headers": "ETag",
}
"""Sent with every page, as the spec lists them."""


def page_response(body: bytes) -> web.Response:
    """A 200 page of participants, with the headers Twilio sends with one."""
    return json_response(body, headers=dict(PAGE_HEADERS))


def twilio_error(
    status: int,
    message: str | None = None,
    *,
    code: int | None = None,
    retry_after: float | None = None,
) -> web.Response:
    """A Twilio-shaped error: ``{"code", "message", "more_info", "status"}``.

    Args:
        status: the HTTP status.
        message: the message; default: a short one for the status.
        code: Twilio's error code; default: the one Twilio uses for the status
            (``20000 + status`` when it has none).
        retry_after: if given, sent as the ``Retry-After`` header, in seconds.
    """
    if code is None:
        code = _CODE_BY_STATUS.get(status, 20000 + status)
    if message is None:
        message = _MESSAGE_BY_STATUS.get(status, "Error")
    body = dumps(
        {
            "code": code,
            "message": message,
            "more_info": _MORE_INFO.format(code=code),
            "status": status,
        }
    )
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    if retry_after is not None:
        headers["Retry-After"] = format_retry_after(retry_after)
    return json_response(body, status=status, headers=headers)


async def send(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Write ``response`` now, unless it was already written, so its time counts as service.

    A client that went away meanwhile is not an error of the emulator: the rest is dropped.
    """
    if response.prepared:
        return
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:  # reset, or lost while waiting for the client to read
        pass
