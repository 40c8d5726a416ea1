"""Builders of API bodies and URLs shared by the tests."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import selectors
import types
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import aiohttp
import attrs
from yarl import URL

from flex_participants import FlexClient

if TYPE_CHECKING:  # for annotations only: the server imports this module
    from aioresponses import aioresponses

    from .server import PagedServer, Seen

T = TypeVar("T")

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token-do-not-leak"
BASE_URL = "https://flex-api.twilio.com"
KD = "KD" + "a" * 32
UO = "UO" + "a" * 31 + "1"


class Credentials(TypedDict):
    """Keyword arguments of `FlexClient` that carry test credentials."""

    account_sid: str
    auth_token: str


def sid(prefix: str, n: int) -> str:
    """A valid SID with a counter in it."""
    return f"{prefix}{n:032x}"


def participants_url(kd: str = KD, uo: str = UO, base: str = BASE_URL) -> str:
    return f"{base}/v1/Interactions/{kd}/Channels/{uo}/Participants"


def participant(n: int, *, kind: str = "customer", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sid": sid("UT", n),
        "type": kind,
        "interaction_sid": KD,
        "channel_sid": UO,
        "url": f"{participants_url()}/{sid('UT', n)}",
        "routing_properties": None,
    }
    body.update(overrides)
    return body


def page_body(
    numbers: range | list[int],
    *,
    page: int = 0,
    page_size: int = 50,
    next_page_url: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """A page as the API sends it, with participants numbered ``numbers``."""
    url = url or participants_url()
    return {
        "participants": [participant(n) for n in numbers],
        "meta": {
            "key": "participants",
            "url": url,
            "page": page,
            "page_size": page_size,
            "first_page_url": url,
            "next_page_url": next_page_url,
            "previous_page_url": None,
        },
    }


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


# -- secrets -------------------------------------------------------------------------------


def secrets_of(username: str = ACCOUNT_SID, password: str = AUTH_TOKEN) -> tuple[str, ...]:
    """Every form the credentials take on the wire: the token, the Basic header and its base64."""
    header = aiohttp.encode_basic_auth(username, password)
    return (password, header, header.removeprefix("Basic "))


# Not followed: scalars hold no text, and what a traceback or a callable leads to is the
# running program, not the error.
_NOT_FOLLOWED = (
    type(None),
    bool,
    int,
    float,
    complex,
    types.TracebackType,
    types.FrameType,
    types.CodeType,
    types.ModuleType,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CoroutineType,
    types.GeneratorType,
    types.AsyncGeneratorType,
)


def _slot_names(cls: type) -> Iterator[str]:
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{name}"
            yield name


def _children(obj: object) -> Iterator[tuple[str, object]]:
    """What ``obj`` holds, each with the step of the path that leads to it."""
    if isinstance(obj, BaseException):
        yield ".args", obj.args
        yield ".__cause__", obj.__cause__
        yield ".__context__", obj.__context__
        if isinstance(obj, BaseExceptionGroup):
            yield ".exceptions", obj.exceptions
    if isinstance(obj, Mapping):
        for index, (key, value) in enumerate(obj.items()):
            yield f"[key {index}]", key
            yield f"[{key!r}]", value
    elif isinstance(obj, list | tuple | set | frozenset | collections.deque):
        for index, item in enumerate(obj):
            yield f"[{index}]", item
    cls = type(obj)
    if attrs.has(cls):
        for field in attrs.fields(cls):
            yield f".{field.name}", getattr(obj, field.name, None)
    with contextlib.suppress(TypeError):
        for name, value in vars(obj).items():
            yield f".{name}", value
    for name in _slot_names(cls):
        yield f".{name}", getattr(obj, name, None)


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    """Fail if any object reachable from ``error`` holds one of ``secrets``.

    Walks the whole object graph: the exception, its args, attributes (``__dict__`` and
    ``__slots__``), ``__cause__``, ``__context__`` and ``__notes__``, the items of mappings
    (multidicts and read-only mappings too) and collections, and attrs instances,
    recursively. Every string and bytes met, and the repr and str of every object, is
    searched. Tracebacks, frames, modules, classes and functions are not followed.
    """
    assert secrets, "no secrets to look for"
    needles = [s.encode() for s in secrets]
    seen: set[int] = set()
    keep: list[object] = []  # what the walk made (item tuples, views) must keep its id
    pending: list[tuple[str, object]] = [("error", error)]
    while pending:
        path, obj = pending.pop()
        if isinstance(obj, _NOT_FOLLOWED) or id(obj) in seen:
            continue
        seen.add(id(obj))
        keep.append(obj)
        if isinstance(obj, str):
            texts = [obj]
        elif isinstance(obj, bytes | bytearray | memoryview):
            raw = bytes(obj)
            found = [s for s, n in zip(secrets, needles, strict=True) if n in raw]
            assert not found, f"a secret is reachable from the error at {path}"
            continue
        else:
            texts = []
            for render in (repr, str):
                with contextlib.suppress(Exception):
                    texts.append(render(obj))
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"a secret is reachable from the error at {path}"
        if isinstance(obj, str):
            continue
        for step, child in _children(obj):
            pending.append((path + step, child))


# -- virtual time ------------------------------------------------------------------------

# Bytes written to a loopback socket are readable at once; this long a real wait, before the
# clock jumps, is only a margin for a busy machine.
_IN_TRANSIT = 0.002


class _VirtualClockSelector(selectors.SelectSelector):
    """A selector that, instead of blocking until the next timer, moves the clock to it."""

    def __init__(self, start: float) -> None:
        super().__init__()
        self.now = start

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and (timeout is None or timeout > 0) and self.get_map():
            ready = super().select(_IN_TRANSIT)  # a socket may have bytes on their way
        if not ready:
            if timeout is None:
                raise RuntimeError("deadlock: nothing ready and no timer scheduled")
            self.now += max(timeout, 0.0)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock only moves when every task waits for a timer: sleeps,
    timeouts and paced starts take no real time, and their times are exact. Real sockets
    work in it (loopback servers in the same loop included)."""

    def __init__(self) -> None:
        self._clock = _VirtualClockSelector(start=1000.0)
        super().__init__(self._clock)

    def time(self) -> float:
        return self._clock.now

    def stall(self, seconds: float) -> None:
        """Move the clock as a callback that blocked the loop for ``seconds`` would: every
        timer due meanwhile then runs late."""
        self._clock.now += seconds


def in_virtual_time(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` in a `VirtualTimeLoop`; its clock starts at 1000.0."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main())


# -- the environment the client reads -----------------------------------------------------

CLIENT_VARIABLES = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_KEY",
    "TWILIO_API_SECRET",
    "TWILIO_REGION",
    "TWILIO_EDGE",
    "FLEX_PARTICIPANTS_BASE_URL",
)
"""The environment variables `FlexClient` reads its credentials, region, edge and URL from."""


def without_client_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` without `CLIENT_VARIABLES`: for a process of the tests that must
    not reach the account of whoever runs them."""
    return {name: value for name, value in environ.items() if name not in CLIENT_VARIABLES}


# -- holding the requests of the tests' loopback server -----------------------------------


def hold_requests(
    server: PagedServer, held: Callable[[Seen], bool] = lambda seen: True
) -> asyncio.Event:
    """Hold each request to ``server`` that ``held`` picks (default: every one) until the
    returned event is set; set it at the end of the test, so that no handler is left waiting."""
    release = asyncio.Event()

    async def hook(seen: Seen) -> None:
        if held(seen):
            await release.wait()

    server.hook = hook
    return release


# -- the SDK's tasks --------------------------------------------------------------------------


async def assert_no_task_left() -> None:
    """Let cancelled tasks run to their end, then fail if any of the SDK's tasks is left."""
    # Imported here: the server imports this module.
    from .server import idle_tasks, settle

    await settle()
    assert idle_tasks() == set()


# -- what a mocked client sent --------------------------------------------------------


def sent_headers(mock: aioresponses, url: str) -> list[dict[str, str]]:
    """The headers of each GET of ``url`` that ``mock`` answered."""
    return [call.kwargs["headers"] for call in mock.requests[("GET", URL(url))]]


def request_count(mock: aioresponses) -> int:
    """How many requests ``mock`` answered."""
    return sum(len(calls) for calls in mock.requests.values())


async def headers_of_one_fetch(mock_http: aioresponses, credentials: Credentials) -> dict[str, str]:
    """The headers of the one request that a client's `fetch_page` sends."""
    mock_http.get(participants_url(), payload=page_body(range(1)))
    async with FlexClient(**credentials) as client:
        await client.fetch_page(KD, UO)
    [headers] = sent_headers(mock_http, participants_url())
    return headers
