"""Faults the user plans, so that a client's error handling can be tested: what they are,
which request each one hits, and how each kind answers."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Final, Literal, get_args

from aiohttp import web

from ._responses import (
    HTML_BAD_GATEWAY,
    format_retry_after,
    json_response,
    page_response,
    send,
    twilio_error,
)

__all__ = ["FAULT_KINDS", "Fault", "FaultKind", "FaultPlan", "answer_with_fault"]

# The kinds of fault; each is described in the docstring of `Fault`.
FaultKind = Literal["status", "html", "reset", "truncated", "empty", "slow", "body"]
FAULT_KINDS: Final = frozenset(get_args(FaultKind))

# Which optional fields have a meaning for which kinds.
_TAKES_STATUS: Final = frozenset({"status", "html", "body"})
_TAKES_RETRY_AFTER: Final = frozenset({"status", "html", "body"})


def _check_seconds(name: str, value: float | None) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure the emulator serves instead of the next ``times`` matching answers.

    A fault matches a request for participants that would otherwise be answered with a page
    (authorised, known channel, valid query; requests refused with 429 for ``max_in_flight``
    never match). ``channel_sid`` and ``page`` (the ``Page`` index) narrow the match when
    given. When several pending faults match a request, the one added first fires.

    Kinds:
        ``"status"``: answers ``status`` (required, 400..599) with a Twilio-shaped error body
        (``code``, ``message``, ``more_info``, ``status``), and ``Retry-After`` if
        ``retry_after`` is given.

        ``"html"``: answers a ``502 Bad Gateway`` HTML page, ``Content-Type: text/html``, as a
        reverse proxy in front of the API would (``status`` overrides 502).

        ``"reset"``: sends the status line, the headers (with the full ``Content-Length``) and
        the first half of the page's JSON, then closes the connection.

        ``"truncated"``: answers 200 ``application/json`` with the first half of the page's
        JSON, with a ``Content-Length`` that matches what is sent.

        ``"empty"``: answers 200 ``application/json`` with an empty body.

        ``"slow"``: sleeps ``delay`` seconds (required), then answers normally.

        ``"body"``: answers ``status`` (default 200) with ``body`` (required, bytes) as given,
        with ``Content-Type`` ``content_type`` (default ``application/json``).

    ``delay``, when given to a kind other than ``"slow"``, is slept before the fault answers.

    Args:
        kind: one of the kinds above.
        times: how many matching requests the fault answers, >= 1.
        channel_sid: only requests for this channel match; ``None``: any channel.
        page: only requests with this ``Page`` index match; ``None``: any page.
        status: the HTTP status of a ``"status"``, ``"html"`` or ``"body"`` fault.
        retry_after: seconds sent as ``Retry-After`` by a ``"status"``, ``"html"`` or
            ``"body"`` fault.
        delay: seconds to sleep before answering.
        body: the raw body of a ``"body"`` fault.
        content_type: the ``Content-Type`` of a ``"body"`` fault.

    Raises:
        ValueError: an unknown kind, a value out of range, a field the kind requires is
            missing, or a field given that the kind has no use for.
    """

    kind: FaultKind
    _: KW_ONLY
    times: int = 1
    channel_sid: str | None = None
    page: int | None = None
    status: int | None = None
    retry_after: float | None = None
    delay: float | None = None
    body: bytes | None = None
    content_type: str | None = None

    def __post_init__(self) -> None:
        kind = self.kind
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {sorted(FAULT_KINDS)}")
        if type(self.times) is not int or self.times < 1:
            raise ValueError(f"times must be an integer >= 1, got {self.times!r}")
        if self.channel_sid is not None and not isinstance(self.channel_sid, str):
            raise ValueError(f"channel_sid must be a string or None, got {self.channel_sid!r}")
        if self.page is not None and (type(self.page) is not int or self.page < 0):
            raise ValueError(f"page must be an integer >= 0 or None, got {self.page!r}")
        if self.status is not None:
            if kind not in _TAKES_STATUS:
                raise ValueError(f"a {kind!r} fault takes no status")
            low = 200 if kind == "body" else 400
            if type(self.status) is not int or not low <= self.status <= 599:
                raise ValueError(
                    f"status of a {kind!r} fault must be an integer from {low} to 599, "
                    f"got {self.status!r}"
                )
        elif kind == "status":
            raise ValueError("a 'status' fault needs status=")
        if self.retry_after is not None and kind not in _TAKES_RETRY_AFTER:
            raise ValueError(f"a {kind!r} fault takes no retry_after")
        _check_seconds("retry_after", self.retry_after)
        _check_seconds("delay", self.delay)
        if kind == "slow" and self.delay is None:
            raise ValueError("a 'slow' fault needs delay=")
        if kind == "body":
            if not isinstance(self.body, bytes):
                raise ValueError(f"a 'body' fault needs body= as bytes, got {self.body!r}")
        elif self.body is not None or self.content_type is not None:
            raise ValueError(f"a {kind!r} fault takes no body or content_type")

    def matches(self, channel_sid: str, page: int) -> bool:
        """Whether a request for ``channel_sid``, page index ``page``, is one this fault hits."""
        return (self.channel_sid is None or self.channel_sid == channel_sid) and (
            self.page is None or self.page == page
        )


@dataclass(slots=True)
class _Pending:
    fault: Fault
    remaining: int


class FaultPlan:
    """The faults still to fire, in the order they were added, with how often each still will."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []

    def add(self, fault: Fault) -> None:
        """Plan ``fault``.

        Raises:
            TypeError: ``fault`` is not a `Fault`.
        """
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a Fault, got {type(fault).__name__}")
        self._pending.append(_Pending(fault, fault.times))

    def clear(self) -> None:
        """Drop every fault still planned."""
        self._pending.clear()

    def pending(self) -> list[tuple[Fault, int]]:
        """Each planned fault with how many more times it will fire."""
        return [(entry.fault, entry.remaining) for entry in self._pending]

    def take(self, channel_sid: str, page: int) -> Fault | None:
        """The first fault that matches the request, counted as fired; ``None`` if none does."""
        for n, entry in enumerate(self._pending):
            if entry.fault.matches(channel_sid, page):
                entry.remaining -= 1
                if entry.remaining == 0:
                    del self._pending[n]
                return entry.fault
        return None


async def answer_with_fault(
    request: web.BaseRequest, fault: Fault, page_body: Callable[[], bytes]
) -> web.StreamResponse:
    """Answer ``request`` as ``fault`` says; ``page_body`` builds the normal answer's JSON.

    The returned response has been written, except for ``"slow"``, whose normal answer is
    returned unsent.
    """
    if fault.delay:
        await asyncio.sleep(fault.delay)
    kind = fault.kind
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = format_retry_after(fault.retry_after)
    response: web.StreamResponse
    if kind == "status":
        assert fault.status is not None
        response = twilio_error(fault.status, retry_after=fault.retry_after)
    elif kind == "html":
        response = web.Response(
            body=HTML_BAD_GATEWAY,
            status=fault.status or 502,
            headers=headers,
            content_type="text/html",
        )
    elif kind == "body":
        assert fault.body is not None
        response = web.Response(
            body=fault.body,
            status=fault.status or 200,
            headers={**headers, "Content-Type": fault.content_type or "application/json"},
        )
    elif kind == "empty":
        response = json_response(b"")
    elif kind == "truncated":
        body = page_body()
        response = json_response(body[: len(body) // 2])
    elif kind == "reset":
        return await _reset(request, page_body())
    else:  # "slow"
        return page_response(page_body())
    await send(request, response)
    return response


async def _reset(request: web.BaseRequest, body: bytes) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "application/json", "Content-Length": str(len(body))},
    )
    try:
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
    except ConnectionResetError:
        return response
    # Closed, not aborted: the client gets what was sent, then the end of the stream,
    # short of the Content-Length it was promised.
    transport = request.transport
    if transport is not None:
        transport.close()
    return response
