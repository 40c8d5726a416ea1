"""Faults the user plans, so that a client's error handling can be tested: what they are,
which request each one hits, and how each kind answers."""

from __future__ import annotations

import asyncio
from typing import Any, Final, Literal, get_args
from urllib.parse import urlsplit, urlunsplit

import attrs
from aiohttp import web

from .._arguments import check_count, check_quantity
from .._request import is_sid
from ._compression import Encoding, compress_padded
from ._paging import RequestedPage, page_token, page_url, participants_url
from ._responses import (
    HTML_BAD_GATEWAY,
    PAGE_HEADERS,
    dumps,
    format_retry_after,
    json_response,
    page_response,
    send,
    twilio_error,
)

__all__ = ["FAULT_KINDS", "Fault", "FaultKind", "FaultPlan", "answer_with_fault"]

# The kinds of fault; each is described in the docstring of `Fault`.
FaultKind = Literal[
    "status",
    "html",
    "reset",
    "truncated",
    "empty",
    "slow",
    "body",
    "cycle",
    "respelled",
    "other_channel",
    "next_page_url",
    "oversized",
    "gzip_bomb",
    "bad_retry_after",
    "oversized_header",
]
FAULT_KINDS: Final = frozenset(get_args(FaultKind))

_Spelling = Literal["reordered", "relative", "fragment", "port", "percent_encoded"]
_SPELLINGS: Final = frozenset(get_args(_Spelling))
_Target = Literal["next_page_url", "participants"]
_TARGETS: Final = frozenset(get_args(_Target))
_UrlForm = Literal["no_host", "empty_host", "scheme_relative", "mailto", "javascript", "file"]
_URL_FORMS: Final = frozenset(get_args(_UrlForm))
_ENCODINGS: Final = frozenset(get_args(Encoding))

# Which optional fields have a meaning for which kinds.
_KINDS_BY_FIELD: Final[dict[str, frozenset[str]]] = {
    "status": frozenset({"status", "html", "body", "bad_retry_after"}),
    "retry_after": frozenset({"status", "html", "body", "bad_retry_after"}),
    "body": frozenset({"body"}),
    "content_type": frozenset({"body"}),
    "period": frozenset({"cycle", "respelled"}),
    "spelling": frozenset({"respelled"}),
    "target": frozenset({"other_channel"}),
    "as_channel": frozenset({"other_channel"}),
    "size": frozenset({"oversized", "gzip_bomb", "oversized_header"}),
    "content_length": frozenset({"oversized"}),
    "encoding": frozenset({"gzip_bomb"}),
    "url": frozenset({"next_page_url"}),
    "form": frozenset({"next_page_url"}),
}

_MIB: Final = 1 << 20
# What a fault serves when the field that sets it is not given.
_DEFAULT_SIZE: Final = {"oversized": 64 * _MIB, "gzip_bomb": 200 * _MIB, "oversized_header": 16384}
_DEFAULT_BAD_RETRY_AFTER: Final = "Fri, 31 Dec 9999 23:59:59 GMT"
# The name of the over-long header of an "oversized_header" fault.
_PADDING_HEADER: Final = "X-Padding"
# The host that a "scheme_relative" next_page_url names: reserved, never resolved (RFC 6761).
_EVIL_HOST: Final = "evil.example"
# An "oversized" body is written this many spaces at a time.
_SPACES: Final = b" " * (64 * 1024)


def _check_seconds(name: str, value: object) -> None:
    if value is not None:
        check_quantity(name, value, unit="seconds")


def _check_choice(kind: str, name: str, value: object, choices: frozenset[str]) -> None:
    if value not in choices:
        raise ValueError(
            f"{name} of a {kind!r} fault must be one of {sorted(choices)}, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class Fault:
    """A failure the emulator serves instead of the next ``times`` matching answers.

    A fault matches a request for participants that would otherwise be answered with a page
    (authorised, known channel, valid query; requests refused with 429 for ``rate_limit``
    or ``max_in_flight`` never match). ``channel_sid`` and ``page`` (the ``Page`` index)
    narrow the match when given. When several pending faults match a request, the one added
    first fires.

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

        The next four answer the page requested, its participants and its ``meta`` as usual,
        but for the one thing they change.

        ``"cycle"``: ``meta.next_page_url`` leads back ``period`` pages (default 1), to the
        URL the server named that page by: ``first_page_url`` for page 0, else the
        ``next_page_url`` of the page before it. With ``period=1`` it is the page's own
        ``meta.url``; with ``period=2``, page B leads back to page A, whose own
        ``next_page_url`` (unchanged) leads to B again. The fault only matches pages whose
        index is at least ``period - 1``, so it fires on the page that closes the cycle, once
        per lap, and ``times`` is the number of laps: a client that does not notice the cycle
        goes round it ``times`` times, then pages on past it. Give a large ``times`` (such as
        ``10**9``) for a cycle that never ends.

        ``"respelled"``: as ``"cycle"`` (``period``, matching, ``times``), but the URL it
        leads back to is spelled differently, though it names the same page; ``spelling``
        (required) says how:

        - ``"reordered"``: the query parameters in reverse order
          (``?PageToken=...&Page=1&PageSize=50``);
        - ``"relative"``: the path and query only, no scheme nor host;
        - ``"fragment"``: ``#participants`` appended;
        - ``"port"``: the port written with a leading zero (``:054321``), the same number to
          RFC 3986 and to browsers' parsers (the emulator's URLs always name their port, so
          this stands in for a default port spelled out, as in ``https://host:443/``);
        - ``"percent_encoded"``: the unreserved ``P`` of ``Participants`` percent-encoded
          (``%50articipants``), which RFC 3986 reads as the same path.

        ``"other_channel"``: answers the page as if it belonged to another channel,
        ``as_channel`` (an ``(interaction_sid, channel_sid)`` pair; default: the requested
        SIDs with every hex digit ``d`` replaced by ``f - d``, a channel the emulator does
        not have unless you add it). ``target`` (required) says what names it:

        - ``"next_page_url"``: ``meta.next_page_url`` is the next page of ``as_channel``, on
          the same origin, with a ``PageToken`` valid for that channel (even on the last
          page), so that following it serves that channel's participants (or a 404 if the
          emulator has no such channel);
        - ``"participants"``: each participant's ``channel_sid``, ``interaction_sid`` and the
          channel's path in its ``url`` name ``as_channel``; paging is unchanged.

        ``"next_page_url"``: ``meta.next_page_url`` is ``url``, any string, served as given;
        or, without ``url``, the malformed URL ``form`` names (default ``"no_host"``), where
        ``/v1/...`` stands for the path and query of the real next page:

        - ``"no_host"``: a scheme and no host, ``http:/v1/...``;
        - ``"empty_host"``: an empty host, ``http:///v1/...``;
        - ``"scheme_relative"``: ``//evil.example/v1/...``, another host (a reserved name
          that never resolves), with the scheme left to the client;
        - ``"mailto"``: ``mailto:participants@evil.example``;
        - ``"javascript"``: ``javascript:alert(document.cookie)``;
        - ``"file"``: ``file:///etc/passwd``.

        The last four test how a client reads an answer: its size, its encoding, its headers.

        ``"oversized"``: a 200 ``application/json`` page of ``size`` bytes (default 64 MiB,
        ``64 * 2**20``): the page requested, with spaces after the ``[`` of its
        ``participants`` up to ``size``, so it is valid JSON and parses to the page (a page
        longer than ``size`` is sent as it is). It is streamed 64 KiB at a time, so the
        emulator never holds it. ``content_length`` (default ``True``) sends the
        ``Content-Length`` of the whole body; ``False`` sends it with
        ``Transfer-Encoding: chunked`` and no length. A client that stops reading and closes
        the connection ends it.

        ``"gzip_bomb"``: a 200 ``application/json`` body with ``Content-Encoding``
        ``encoding`` (``"gzip"``, the default, or ``"deflate"``: a zlib stream, RFC 1950)
        and a ``Content-Length`` of what is sent, which inflates to ``size`` bytes (default
        200 MiB, ``200 * 2**20``): the page requested, padded with spaces as for
        ``"oversized"``, with a valid checksum. 200 MiB are sent as about 200 KiB.

        ``"bad_retry_after"``: answers ``status`` (429, the default, or 503) with a Twilio
        error body and ``Retry-After: {retry_after}``, a string sent as given (no CR or LF).
        The default, ``"Fri, 31 Dec 9999 23:59:59 GMT"``, is a valid HTTP date that
        ``email.utils.parsedate_to_datetime`` accepts, some 8,000 years away: a client that
        does not cap it never retries. Others worth a test: ``"Fri, 31 Dec 99999 23:59:59
        GMT"`` (``parsedate_to_datetime`` raises ``ValueError``), ``"1e999"`` (``float()``
        is infinite), ``"nan"``, ``"-5"``, ``"99999999999999999999"`` (``timedelta``
        overflows), ``""``.

        ``"oversized_header"``: the page, with an ``X-Padding`` header whose value is
        ``size`` bytes (default 16 KiB, 16384), past aiohttp's client limit of 8190 bytes
        for a header (``max_field_size``).

    ``delay``, when given to a kind other than ``"slow"``, is slept before the fault answers.

    Args:
        kind: one of the kinds above.
        times: how many matching requests the fault answers, >= 1.
        channel_sid: only requests for this channel match; ``None``: any channel.
        page: only requests with this ``Page`` index match; ``None``: any page.
        status: the HTTP status of a ``"status"``, ``"html"``, ``"body"`` or
            ``"bad_retry_after"`` fault.
        retry_after: seconds sent as ``Retry-After`` by a ``"status"``, ``"html"`` or
            ``"body"`` fault; the string sent as given by a ``"bad_retry_after"`` fault.
        delay: seconds to sleep before answering.
        body: the raw body of a ``"body"`` fault.
        content_type: the ``Content-Type`` of a ``"body"`` fault.
        period: how many pages back a ``"cycle"`` or ``"respelled"`` fault leads, >= 1.
        spelling: how a ``"respelled"`` fault spells its URL.
        target: what an ``"other_channel"`` fault changes.
        as_channel: the ``(interaction_sid, channel_sid)`` an ``"other_channel"`` fault names.
        size: bytes of the body of an ``"oversized"`` fault, of what a ``"gzip_bomb"``
            inflates to, of the header value of an ``"oversized_header"`` fault; >= 1.
        content_length: whether an ``"oversized"`` fault sends ``Content-Length``.
        encoding: the ``Content-Encoding`` of a ``"gzip_bomb"``.
        url: the ``next_page_url`` of a ``"next_page_url"`` fault.
        form: the malformed URL a ``"next_page_url"`` fault serves without ``url``.

    Raises:
        ValueError: an unknown kind, a value out of range, a field the kind requires is
            missing, or a field given that the kind has no use for.
    """

    kind: FaultKind = attrs.field(kw_only=False)
    times: int = 1
    channel_sid: str | None = None
    page: int | None = None
    status: int | None = None
    retry_after: float | str | None = None
    delay: float | None = None
    body: bytes | None = None
    content_type: str | None = None
    period: int | None = None
    spelling: _Spelling | None = None
    target: _Target | None = None
    as_channel: tuple[str, str] | None = None
    size: int | None = None
    content_length: bool | None = None
    encoding: Encoding | None = None
    url: str | None = None
    form: _UrlForm | None = None

    def __attrs_post_init__(self) -> None:
        kind = self.kind
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {sorted(FAULT_KINDS)}")
        check_count("times", self.times, minimum=1)
        if self.channel_sid is not None and not isinstance(self.channel_sid, str):
            raise ValueError(f"channel_sid must be a string or None, got {self.channel_sid!r}")
        if self.page is not None:
            check_count("page", self.page, minimum=0)
        for name, kinds in _KINDS_BY_FIELD.items():
            if getattr(self, name) is not None and kind not in kinds:
                raise ValueError(f"a {kind!r} fault takes no {name}")
        _check_seconds("delay", self.delay)
        if kind == "slow" and self.delay is None:
            raise ValueError("a 'slow' fault needs delay=")
        self._check_status()
        self._check_retry_after()
        if kind == "body" and not isinstance(self.body, bytes):
            raise ValueError(f"a 'body' fault needs body= as bytes, got {self.body!r}")
        if self.content_type is not None and not isinstance(self.content_type, str):
            raise ValueError(f"content_type must be a string, got {self.content_type!r}")
        if self.period is not None:
            check_count("period", self.period, minimum=1)
        if kind == "respelled":
            _check_choice(kind, "spelling", self.spelling, _SPELLINGS)
        if kind == "other_channel":
            _check_choice(kind, "target", self.target, _TARGETS)
            self._check_as_channel()
        if self.size is not None:
            check_count("size", self.size, minimum=1)
        if self.content_length is not None and not isinstance(self.content_length, bool):
            raise ValueError(f"content_length must be True or False, got {self.content_length!r}")
        if self.encoding is not None:
            _check_choice(kind, "encoding", self.encoding, _ENCODINGS)
        if self.url is not None:
            if not isinstance(self.url, str):
                raise ValueError(f"url must be a string, got {self.url!r}")
            if self.form is not None:
                raise ValueError("a 'next_page_url' fault takes url= or form=, not both")
        if self.form is not None:
            _check_choice(kind, "form", self.form, _URL_FORMS)

    def _check_status(self) -> None:
        kind, status = self.kind, self.status
        if status is None:
            if kind == "status":
                raise ValueError("a 'status' fault needs status=")
            return
        if kind == "bad_retry_after":
            if type(status) is not int or status not in (429, 503):
                raise ValueError(
                    f"status of a 'bad_retry_after' fault must be 429 or 503, got {status!r}"
                )
            return
        low = 200 if kind == "body" else 400
        if type(status) is not int or not low <= status <= 599:
            raise ValueError(
                f"status of a {kind!r} fault must be an integer from {low} to 599, got {status!r}"
            )

    def _check_retry_after(self) -> None:
        value = self.retry_after
        if self.kind != "bad_retry_after":
            if isinstance(value, str):
                raise ValueError(
                    f"retry_after of a {self.kind!r} fault is a number of seconds; "
                    "a 'bad_retry_after' fault sends a string as given"
                )
            _check_seconds("retry_after", value)
        elif value is not None and (
            not isinstance(value, str) or any(c in value for c in "\r\n\0")
        ):
            raise ValueError(
                "retry_after of a 'bad_retry_after' fault must be a string without CR, LF "
                f"or NUL, got {value!r}"
            )

    def _check_as_channel(self) -> None:
        value = self.as_channel
        if value is None:
            return
        if not (
            isinstance(value, tuple)
            and len(value) == 2
            and is_sid(value[0], "KD")
            and is_sid(value[1], "UO")
        ):
            raise ValueError(
                "as_channel must be an (interaction_sid, channel_sid) tuple: an InteractionSid "
                f"and a ChannelSid, 'KD' and 'UO' and 32 hex digits each, got {value!r}"
            )

    def matches(self, channel_sid: str, page: int) -> bool:
        """Whether a request for ``channel_sid``, page index ``page``, is one this fault hits.

        A ``"cycle"`` or ``"respelled"`` fault also needs ``period - 1`` pages before the
        page, to lead back to.
        """
        if self.kind in ("cycle", "respelled") and page < (self.period or 1) - 1:
            return False
        return (self.channel_sid is None or self.channel_sid == channel_sid) and (
            self.page is None or self.page == page
        )


@attrs.define
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
    request: web.BaseRequest, fault: Fault, page: RequestedPage
) -> web.StreamResponse:
    """Answer ``request`` as ``fault`` says; ``page`` is the page it asks for.

    The returned response has been written, except for the kinds that answer as the API
    would, a page or a Twilio error with something changed (``"slow"``, the paging kinds,
    ``"gzip_bomb"``, ``"bad_retry_after"``, ``"oversized_header"``): the endpoint sends
    those with the headers it adds to every answer.
    """
    if fault.delay:
        await asyncio.sleep(fault.delay)
    kind = fault.kind
    # A number of seconds: a string is the literal header of a "bad_retry_after" fault.
    seconds = fault.retry_after if isinstance(fault.retry_after, int | float) else None
    headers = {} if seconds is None else {"Retry-After": format_retry_after(seconds)}
    response: web.StreamResponse
    if kind == "status":
        assert fault.status is not None
        response = twilio_error(fault.status, retry_after=seconds)
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
        body = page.body()
        response = json_response(body[: len(body) // 2])
    elif kind == "reset":
        return await _reset(request, page.body())
    elif kind == "oversized":
        return await _oversized(request, page.body(), fault)
    else:
        return _page_answer(fault, page)
    await send(request, response)
    return response


def _size(fault: Fault) -> int:
    return _DEFAULT_SIZE[fault.kind] if fault.size is None else fault.size


def _page_answer(fault: Fault, page: RequestedPage) -> web.Response:
    """The answers that are a page, or an error, as the API itself would send one."""
    kind = fault.kind
    if kind == "slow":
        return page_response(page.body())
    if kind == "bad_retry_after":
        response = twilio_error(fault.status or 429)
        value = fault.retry_after
        response.headers["Retry-After"] = (
            value if isinstance(value, str) else _DEFAULT_BAD_RETRY_AFTER
        )
        return response
    if kind == "gzip_bomb":
        head, tail = _split_for_padding(page.body())
        spaces = max(0, _size(fault) - len(head) - len(tail))
        encoding = fault.encoding or "gzip"
        return web.Response(
            body=compress_padded(head, spaces, tail, encoding),
            headers={
                **PAGE_HEADERS,
                "Content-Type": "application/json",
                "Content-Encoding": encoding,
            },
        )
    if kind == "oversized_header":
        response = page_response(page.body())
        response.headers[_PADDING_HEADER] = "x" * _size(fault)
        return response
    content = page.content()
    meta = content["meta"]
    if kind in ("cycle", "respelled"):
        meta["next_page_url"] = _url_back(page, meta, fault)
    elif kind == "next_page_url":
        meta["next_page_url"] = fault.url if fault.url is not None else _malformed(page, fault)
    else:  # "other_channel"
        interaction_sid, channel_sid = fault.as_channel or _complement(page)
        if fault.target == "next_page_url":
            meta["next_page_url"] = _next_page_of(page, interaction_sid, channel_sid)
        else:
            content["participants"] = [
                _moved(participant, page, interaction_sid, channel_sid)
                for participant in content["participants"]
            ]
    return page_response(dumps(content))


# -- paging that leads astray ---------------------------------------------------------------


def _url_back(page: RequestedPage, meta: dict[str, Any], fault: Fault) -> str:
    period = fault.period or 1
    url: str = meta["url"] if period == 1 else page.url_of(page.paging.page - period + 1)
    return url if fault.spelling is None else _respelled(url, fault.spelling)


def _respelled(url: str, spelling: _Spelling) -> str:
    parts = urlsplit(url)
    if spelling == "reordered":
        return urlunsplit(parts._replace(query="&".join(reversed(parts.query.split("&")))))
    if spelling == "relative":
        return urlunsplit(parts._replace(scheme="", netloc=""))
    if spelling == "fragment":
        return urlunsplit(parts._replace(fragment="participants"))
    if spelling == "port":
        host, _, port = parts.netloc.rpartition(":")
        return urlunsplit(parts._replace(netloc=f"{host}:0{port}"))
    # "percent_encoded": the first character of the last segment, "P" of "Participants".
    head, _, last = parts.path.rpartition("/")
    path = f"{head}/%{ord(last[0]):02X}{last[1:]}"
    return urlunsplit(parts._replace(path=path))


def _malformed(page: RequestedPage, fault: Fault) -> str:
    form = fault.form or "no_host"
    paging = page.paging
    next_page = page.url_of(paging.page + 1)
    parts = urlsplit(next_page)
    path = urlunsplit(parts._replace(scheme="", netloc=""))
    by_form: dict[str, str] = {
        "no_host": f"{parts.scheme}:{path}",
        "empty_host": f"{parts.scheme}://{path}",
        "scheme_relative": f"//{_EVIL_HOST}{path}",
        "mailto": f"mailto:participants@{_EVIL_HOST}",
        "javascript": "javascript:alert(document.cookie)",
        "file": "file:///etc/passwd",
    }
    return by_form[form]


def _complement(page: RequestedPage) -> tuple[str, str]:
    """The SIDs of the requested channel with each hex digit ``d`` replaced by ``f - d``."""

    def flipped(sid: str) -> str:
        return sid[:2] + "".join(f"{15 - int(digit, 16):x}" for digit in sid[2:])

    return flipped(page.channel.interaction_sid), flipped(page.channel.channel_sid)


def _next_page_of(page: RequestedPage, interaction_sid: str, channel_sid: str) -> str:
    paging = page.paging
    next_offset = paging.offset + paging.page_size
    return page_url(
        participants_url(page.origin, interaction_sid, channel_sid),
        paging.page_size,
        paging.page + 1,
        page_token(channel_sid, next_offset),
    )


def _moved(
    participant: dict[str, Any], page: RequestedPage, interaction_sid: str, channel_sid: str
) -> dict[str, Any]:
    # A copy: the participants of a channel given by the user are the stored dicts.
    moved = {**participant, "interaction_sid": interaction_sid, "channel_sid": channel_sid}
    url = participant.get("url")
    channel = page.channel
    own = f"/Interactions/{channel.interaction_sid}/Channels/{channel.channel_sid}/"
    if isinstance(url, str):
        moved["url"] = url.replace(own, f"/Interactions/{interaction_sid}/Channels/{channel_sid}/")
    return moved


# -- bodies too large to hold ---------------------------------------------------------------


def _split_for_padding(body: bytes) -> tuple[bytes, bytes]:
    """The page's JSON cut after the ``[`` of its participants, where spaces may go."""
    cut = body.index(b"[") + 1
    return body[:cut], body[cut:]


async def _oversized(request: web.BaseRequest, body: bytes, fault: Fault) -> web.StreamResponse:
    head, tail = _split_for_padding(body)
    spaces = max(0, _size(fault) - len(body))
    response = web.StreamResponse(
        status=200, headers={**PAGE_HEADERS, "Content-Type": "application/json"}
    )
    if fault.content_length is False:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(body) + spaces
    try:
        await response.prepare(request)
        await response.write(head)
        chunks, rest = divmod(spaces, len(_SPACES))
        for _ in range(chunks):
            await response.write(_SPACES)
        await response.write(_SPACES[:rest] + tail)
        await response.write_eof()
    except ConnectionError:
        # The client stopped reading and went away, as a careful client does.
        pass
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
