"""`_errors`: errors are values that pickle and copy, and no raised error holds the credentials."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.client_reqrep import RequestInfo
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from flex_participants import (
    AuthenticationError,
    ChannelListError,
    ChannelResult,
    ClientClosedError,
    DeadlineExceededError,
    FlexAPIError,
    FlexClient,
    FlexError,
    InvalidArgumentError,
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    ResponseTooLargeError,
    RetryPolicy,
    ServerError,
    TransportError,
    UnsafeURLError,
)
from flex_participants._errors import _transport_errors

from .helpers import KD, UO, assert_no_secret, secrets_of
from .server import PagedServer, Seen

ClientFor = Callable[..., FlexClient]

URL_TEXT = f"https://flex-api.twilio.com/v1/Interactions/{KD}/Channels/{UO}/Participants"
ATTRIBUTES = ("message", "attempts", "status", "code", "more_info", "url", "retry_after", "is_json")


# Subclasses as users write them: at module level, so that pickle can find them by name.


class ChannelFailedError(FlexError):
    """A user's error with a required keyword-only argument of its own."""

    def __init__(self, *, channel: str, attempts: int = 0) -> None:
        super().__init__(f"channel {channel} failed", attempts=attempts)
        self.channel = channel


class QuotaError(RateLimitError):
    """A user's subclass of an API error, with an extra positional argument."""

    def __init__(self, quota: int, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.quota = quota


def api_error(cls: type[FlexAPIError]) -> FlexAPIError:
    error = cls(
        "Too many requests",
        status=429,
        url=URL_TEXT,
        code=20429,
        more_info="https://www.twilio.com/docs/errors/20429",
        attempts=3,
    )
    error.retry_after = 2.5
    return error


ERRORS: dict[str, Callable[[], FlexError]] = {
    "FlexError": lambda: FlexError("this FlexClient is closed", attempts=2),
    "InvalidArgumentError": lambda: InvalidArgumentError("page_size must be >= 1"),
    "ChannelListError": lambda: ChannelListError("channels.csv line 2 is not a channel: ..."),
    "UnsafeURLError": lambda: UnsafeURLError("refusing to send credentials", attempts=1),
    "ClientClosedError": lambda: ClientClosedError("the client was closed", attempts=4),
    "DeadlineExceededError": lambda: DeadlineExceededError(
        "the deadline of 5 s ran out", deadline=5.0, url=URL_TEXT, attempts=3
    ),
    "FlexAPIError": lambda: api_error(FlexAPIError),
    "AuthenticationError": lambda: api_error(AuthenticationError),
    "NotFoundError": lambda: api_error(NotFoundError),
    "RateLimitError": lambda: api_error(RateLimitError),
    "ServerError": lambda: api_error(ServerError),
    "TransportError": lambda: TransportError("request to x timed out", attempts=3),
    "InvalidResponseError": lambda: InvalidResponseError(
        "not a page of participants", url=URL_TEXT, status=200, is_json=True, attempts=2
    ),
    "ResponseTooLargeError": lambda: ResponseTooLargeError(
        "body larger than 1000 bytes", url=URL_TEXT, status=200, attempts=1
    ),
    "user subclass of FlexError": lambda: ChannelFailedError(channel=UO, attempts=2),
    "user subclass of RateLimitError": lambda: QuotaError(
        100, "quota spent", status=429, url=URL_TEXT, attempts=5
    ),
}


def round_trip(value: Any, protocol: int = pickle.DEFAULT_PROTOCOL) -> Any:
    """``value`` pickled and unpickled, as a worker queue such as arq does."""
    return pickle.loads(pickle.dumps(value, protocol=protocol))  # noqa: S301 - our own bytes


def _pickle_with(protocol: int) -> Callable[[Any], Any]:
    return lambda value: round_trip(value, protocol)


COPIES: dict[str, Callable[[Any], Any]] = {
    "copy.copy": copy.copy,
    "copy.deepcopy": copy.deepcopy,
    **{f"pickle protocol {p}": _pickle_with(p) for p in range(pickle.HIGHEST_PROTOCOL + 1)},
}


def assert_same_error(copied: BaseException, original: BaseException) -> None:
    assert copied is not original
    assert type(copied) is type(original)
    assert str(copied) == str(original)
    assert repr(copied) == repr(original)
    assert copied.args == original.args
    assert vars(copied) == vars(original)
    for name in ATTRIBUTES:
        assert getattr(copied, name, None) == getattr(original, name, None), name


def test_every_class_of_the_hierarchy_is_covered() -> None:
    def subclasses(cls: type[FlexError]) -> set[type[FlexError]]:
        found = {cls}
        for sub in cls.__subclasses__():
            found |= subclasses(sub)
        return found

    library = {c for c in subclasses(FlexError) if c.__module__.startswith("flex_participants")}
    assert library <= {type(make()) for make in ERRORS.values()}


@pytest.mark.parametrize("how", COPIES.values(), ids=COPIES.keys())
@pytest.mark.parametrize("make", ERRORS.values(), ids=ERRORS.keys())
def test_an_error_copies_and_pickles_with_its_type_and_every_attribute(
    make: Callable[[], FlexError], how: Callable[[Any], Any]
) -> None:
    original = make()
    assert_same_error(how(original), original)


@pytest.mark.parametrize("how", COPIES.values(), ids=COPIES.keys())
@pytest.mark.parametrize("make", ERRORS.values(), ids=ERRORS.keys())
def test_a_raised_error_copies_without_its_chain_but_with_its_notes(
    make: Callable[[], FlexError], how: Callable[[Any], Any]
) -> None:
    original = make()
    original.add_note("while fetching page 3")
    try:
        raise original from OSError("connection reset")
    except FlexError as caught:
        copied = how(caught)
    assert_same_error(copied, original)
    assert copied.__notes__ == ["while fetching page 3"]
    assert copied.__cause__ is None


def test_attempts_set_after_the_error_was_made_survive_pickling() -> None:
    error = TransportError("request to x failed")
    error.attempts = 4
    copied = round_trip(error)
    assert copied.attempts == 4
    assert str(copied) == "request to x failed (after 4 attempts)"


def test_a_copied_error_is_still_caught_as_its_bases() -> None:
    copied = round_trip(InvalidArgumentError("bad page_size"))
    with pytest.raises(ValueError, match="bad page_size"):
        raise copied


@pytest.mark.parametrize("make", ERRORS.values(), ids=ERRORS.keys())
def test_a_channel_result_carrying_an_error_pickles(make: Callable[[], FlexError]) -> None:
    result = ChannelResult(KD, UO, error=make())
    copied = round_trip(result)
    assert (copied.interaction_sid, copied.channel_sid) == (KD, UO)
    assert copied.participants == ()
    assert not copied.ok
    assert copied.error is not None
    assert result.error is not None
    assert_same_error(copied.error, result.error)


# -- assert_no_secret finds what it looks for ----------------------------------------------

SECRETS = secrets_of()
TOKEN, HEADER, BASE64 = SECRETS


def request_info(*, authorization: str | None = HEADER) -> RequestInfo:
    headers = CIMultiDict({"Host": "flex-api.twilio.com", "User-Agent": "flex-participants"})
    if authorization is not None:
        headers["Authorization"] = authorization
    return RequestInfo(URL(URL_TEXT), "GET", CIMultiDictProxy(headers), URL(URL_TEXT))


def response_error(info: RequestInfo) -> aiohttp.ClientResponseError:
    return aiohttp.ClientResponseError(info, (), status=400, message="Got more than 8190 bytes")


def chained(inner: BaseException) -> TransportError:
    """A TransportError whose cause is a payload error whose context is ``inner``."""
    try:
        try:
            raise inner
        except BaseException:
            raise aiohttp.ClientPayloadError("cut off") from None
    except aiohttp.ClientPayloadError as payload:
        payload.__suppress_context__ = False
        error = TransportError("request failed")
        error.__cause__ = payload
        return error


@attrs.define(eq=False)
class Holder:
    value: object


class Slotted:
    __slots__ = ("__hidden",)

    def __init__(self, value: object) -> None:
        self.__hidden = value


class Plain:
    def __init__(self, value: object) -> None:
        self.value = value


def with_args(*args: object) -> TransportError:
    error = TransportError("request failed")
    error.args = args
    return error


def noted(secret: str) -> TransportError:
    error = TransportError("request failed")
    error.add_note(f"sent {secret}")
    return error


HIDDEN: dict[str, Callable[[], BaseException]] = {
    "header of a nested cause's request_info": lambda: chained(response_error(request_info())),
    "in args only": lambda: with_args("request failed", (1, [{"h": HEADER}])),
    "second value of a multidict key": lambda: chained(
        ValueError(CIMultiDict([("Authorization", "none"), ("Authorization", HEADER)]))
    ),
    "read-only mapping in a set of tuples": lambda: chained(
        ValueError({("a", 1), ("b", Holder(MappingProxyType({"k": TOKEN})))})
    ),
    "private slot of a plain object": lambda: chained(ValueError(Slotted(BASE64))),
    "attribute of a plain object": lambda: chained(ValueError(Plain([b"x", BASE64.encode()]))),
    "a note": lambda: noted(TOKEN),
    "an exception group": lambda: chained(
        ExceptionGroup("two", [ValueError("ok"), response_error(request_info())])
    ),
    "bytes": lambda: chained(ValueError(bytearray(HEADER.encode()))),
}


@pytest.mark.parametrize("make", HIDDEN.values(), ids=HIDDEN.keys())
def test_assert_no_secret_finds_a_secret_hidden_anywhere(
    make: Callable[[], BaseException],
) -> None:
    with pytest.raises(AssertionError, match="a secret is reachable from the error at error"):
        assert_no_secret(make(), *SECRETS)


def test_assert_no_secret_passes_an_error_without_secrets() -> None:
    assert_no_secret(chained(response_error(request_info(authorization=None))), *SECRETS)


# -- the scrub: aiohttp's errors keep the request, but not its credentials ------------------


def mapped(inner: BaseException) -> BaseException:
    """What leaves `_transport_errors` when ``inner`` is raised in it."""
    with pytest.raises(BaseException) as caught:  # noqa: PT011 - the caller checks the class
        with _transport_errors(URL_TEXT):
            raise inner
    return caught.value


def test_a_response_error_is_chained_without_the_authorization_header() -> None:
    error = mapped(response_error(request_info()))
    assert isinstance(error, TransportError)
    assert_no_secret(error, *SECRETS)
    cause = error.__cause__
    assert isinstance(cause, aiohttp.ClientResponseError)
    assert cause.status == 400
    assert cause.args == (cause.request_info, ())
    info = cause.request_info
    assert isinstance(info, RequestInfo)
    assert (info.url, info.method, info.real_url) == (URL(URL_TEXT), "GET", URL(URL_TEXT))
    assert dict(info.headers) == {"Host": "flex-api.twilio.com", "User-Agent": "flex-participants"}


def test_proxy_authorization_is_dropped_too() -> None:
    info = request_info(authorization=None)
    headers = CIMultiDict(info.headers)
    headers["proxy-authorization"] = HEADER
    error = mapped(response_error(info._replace(headers=CIMultiDictProxy(headers))))
    assert_no_secret(error, *SECRETS)


def test_a_response_error_deep_in_the_chain_is_scrubbed() -> None:
    inner = chained(response_error(request_info())).__cause__
    assert inner is not None
    assert_no_secret(mapped(inner), *SECRETS)


def test_a_timeout_caused_by_a_response_error_is_scrubbed() -> None:
    timeout = TimeoutError()
    timeout.__context__ = response_error(request_info())
    error = mapped(timeout)
    assert isinstance(error, TransportError)
    assert "timed out" in str(error)
    assert_no_secret(error, *SECRETS)


def test_an_error_that_is_not_mapped_is_scrubbed_and_passes_through() -> None:
    other = ValueError("a header aiohttp refused")
    other.__context__ = response_error(request_info())
    error = mapped(other)
    assert error is other
    assert_no_secret(error, *SECRETS)


async def test_the_responses_of_a_redirect_history_are_scrubbed() -> None:
    async def loop_forever(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/again")

    app = web.Application()
    app.router.add_get("/{tail:.*}", loop_forever)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/start"))
        async with aiohttp.ClientSession() as session:
            with pytest.raises(TransportError) as caught, _transport_errors(url):
                await session.get(url, headers={"Authorization": HEADER}, max_redirects=2)
    finally:
        await server.close()
    cause = caught.value.__cause__
    assert isinstance(cause, aiohttp.TooManyRedirects)
    assert len(cause.history) == 2
    assert_no_secret(caught.value, *SECRETS)


async def test_a_header_longer_than_aiohttp_reads_gives_a_transport_error_without_secrets(
    paged_server: PagedServer, client_for: ClientFor
) -> None:
    async def oversized_header(seen: Seen) -> web.StreamResponse:
        return web.json_response({}, headers={"X-Padding": "a" * 9000})

    uo = paged_server.add_channel(1, 10)
    paged_server.hook = oversized_header
    async with client_for(paged_server, retry=RetryPolicy(max_attempts=2, backoff_base=0)) as c:
        with pytest.raises(TransportError, match="8190 bytes") as caught:
            await c.fetch_page(KD, uo)
    assert caught.value.attempts == 2
    assert len(paged_server.seen) == 2
    assert paged_server.seen[0].authorization == HEADER  # it was sent, and then forgotten
    assert isinstance(caught.value.__cause__, aiohttp.ClientResponseError)
    assert_no_secret(caught.value, *SECRETS)


@pytest.mark.parametrize(
    ("cls", "status", "hint"),
    [
        (AuthenticationError, 401, "TWILIO_API_KEY, TWILIO_API_SECRET"),
        (AuthenticationError, 403, "lack access to the Interactions API"),
        (NotFoundError, 404, "the interaction SID (KD...) and the channel SID (UO...)"),
    ],
)
def test_refused_and_not_found_say_what_to_check(
    cls: type[FlexAPIError], status: int, hint: str
) -> None:
    error = cls("Authenticate", status=status, url=URL_TEXT, code=20003)
    assert hint in str(error)
    assert error.message == "Authenticate"  # Twilio's own message is kept as it came
