"""The way to the origin: the proxy (given, or from the environment), its credentials, and TLS.

The client finds the proxy itself rather than leaving it to aiohttp's ``trust_env``: that
would also read ``.netrc`` for the origin's host, and a ``.netrc`` entry for it (one written
for curl, say) makes aiohttp refuse every request that carries the client's own
``Authorization`` header. The environment is read with the same standard-library functions
aiohttp uses (``urllib.request.getproxies`` and ``proxy_bypass``), once, when the client is
made: the client talks to one origin only. A caller's own session that trusts the
environment would read that ``.netrc`` itself: `check_session` refuses one that would find an
entry for the origin there.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import netrc
import os
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from ssl import SSLContext
from typing import Any, TypedDict

import aiohttp
from yarl import URL

from ._errors import FlexError, InvalidArgumentError

__all__ = [
    "Route",
    "check_session",
    "check_trace_configs",
    "netrc_has_entry",
    "refused_by_aiohttp",
    "route_to",
    "sent_trace_config",
    "when_sent",
]

_on_sent: contextvars.ContextVar[Callable[[float], None] | None] = contextvars.ContextVar(
    "flex_participants_on_sent", default=None
)


class _RequestOptions(TypedDict):
    """The keyword arguments of ``session.get`` that the route decides."""

    proxy: URL | None
    proxy_headers: dict[str, str] | None
    ssl: SSLContext | bool


class Route:
    """How every request of one client reaches its origin.

    ``options`` go to each ``session.get``; ``headers`` are added to the request itself
    (the proxy's credentials, when a forwarding proxy reads the request: plain ``http``).
    Neither the proxy's credentials nor its header appear in the repr.
    """

    __slots__ = ("_proxy_header", "headers", "options")

    def __init__(
        self, origin: URL, proxy: URL | None, proxy_header: str | None, ssl: SSLContext | None
    ) -> None:
        self._proxy_header = proxy_header
        self.headers: dict[str, str] = {}
        proxy_headers: dict[str, str] | None = None
        if proxy is not None and proxy_header is not None:
            if origin.scheme == "https":
                # Sent with CONNECT only, to the proxy: never inside the tunnel to the origin.
                proxy_headers = {"Proxy-Authorization": proxy_header}
            else:
                # A forwarding proxy reads the request itself, and drops the header (it is
                # hop-by-hop); aiohttp sends proxy_headers= with CONNECT only.
                self.headers["Proxy-Authorization"] = proxy_header
        self.options: _RequestOptions = {
            "proxy": proxy,
            "proxy_headers": proxy_headers,
            # True is aiohttp's own default: the system's CAs, verification on.
            "ssl": ssl if ssl is not None else True,
        }

    @property
    def proxy(self) -> URL | None:
        """The proxy every request goes through (without its credentials), or ``None``."""
        return self.options["proxy"]

    def __repr__(self) -> str:
        proxy = self.proxy
        who = " with credentials" if self._proxy_header is not None else ""
        return f"<route via {str(proxy) + who if proxy else 'no proxy'}>"

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("a route holds proxy credentials and cannot be pickled")


def route_to(
    origin: URL,
    *,
    proxy: object,
    ssl: object,
    trust_env: object,
) -> Route:
    """The `Route` to ``origin`` for a client's ``proxy=``, ``ssl=`` and ``trust_env=``.

    An explicit ``proxy`` wins over the environment. With ``trust_env``, the proxy for the
    origin's scheme (``HTTPS_PROXY``, or ``HTTP_PROXY`` for a loopback ``http`` origin) is
    used unless ``NO_PROXY`` (or the system's settings, where the platform has them) says
    the origin's host goes direct.

    Raises:
        InvalidArgumentError: ``proxy`` (or the environment's proxy) is not an ``http://``
            URL of a host, ``ssl`` is not an `ssl.SSLContext` or ``None``, or ``trust_env``
            is not a ``bool``. No message echoes a proxy's credentials.
    """
    if ssl is not None and not isinstance(ssl, SSLContext):
        raise InvalidArgumentError(
            f"ssl must be an ssl.SSLContext (for a custom CA bundle) or None, got {ssl!r}; "
            "certificate checks cannot be turned off"
        )
    if type(trust_env) is not bool:
        raise InvalidArgumentError(f"trust_env must be True or False, got {trust_env!r}")
    source = "proxy"
    if proxy is None and trust_env:
        proxy, source = _proxy_from_environment(origin)
    if proxy is None:
        return Route(origin, None, None, ssl)
    proxy_url, header = _check_proxy(proxy, source)
    return Route(origin, proxy_url, header, ssl)


def _proxy_from_environment(origin: URL) -> tuple[str | None, str]:
    # getproxies() also leaves HTTP_PROXY out in a CGI script (httpoxy), as aiohttp does.
    variable = f"{origin.scheme.upper()}_PROXY"
    host = origin.host
    if host is not None and urllib.request.proxy_bypass(host):
        return None, variable
    return urllib.request.getproxies().get(origin.scheme) or None, variable


def _check_proxy(proxy: object, source: str) -> tuple[URL, str | None]:
    """The proxy's URL without credentials, and its ``Proxy-Authorization`` value if any."""
    if not isinstance(proxy, str) or not proxy:
        what = type(proxy).__name__
        raise InvalidArgumentError(f"{source} must be a non-empty http:// URL string, got {what}")
    try:
        url = URL(proxy)
    except ValueError:
        # yarl's message may quote the URL, credentials and all.
        raise InvalidArgumentError(f"{source} is not a URL") from None
    if url.scheme != "http" or not url.host:
        shown = f"{url.scheme}://{url.host}" if url.host else "a URL without a host"
        raise InvalidArgumentError(
            f"{source} must be an http:// URL of a proxy host, got {shown} (an https origin is "
            "still reached over TLS through it, with CONNECT)"
        )
    if url.path not in {"", "/"} or url.query_string or url.fragment:
        where = url.with_user(None).with_query(None).with_fragment(None)
        raise InvalidArgumentError(f"{source} must not have a path, query or fragment: {where}")
    header = None
    if url.user is not None or url.password is not None:
        try:
            header = aiohttp.encode_basic_auth(url.user or "", url.password or "")
        except (ValueError, UnicodeError):
            raise InvalidArgumentError(f"{source}: unusable proxy credentials") from None
    return url.with_user(None).with_password(None).with_path(""), header


def netrc_has_entry(host: str | None) -> bool:
    """Whether the ``.netrc`` that aiohttp reads for a session with ``trust_env=True`` (the
    file ``NETRC`` names, else ``~/.netrc``) holds credentials for ``host``: its own entry,
    or a ``default`` one. A file that is missing or cannot be parsed holds none, for aiohttp
    too."""
    if not host:
        return False
    try:
        named = os.environ.get("NETRC")
        path = Path(named) if named is not None else Path.home() / _NETRC_NAME
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, RuntimeError, netrc.NetrcParseError):  # RuntimeError: no home directory
        return False


_NETRC_NAME = "_netrc" if os.name == "nt" else ".netrc"


def check_session(session: object, origin: URL) -> aiohttp.ClientSession | None:
    """``session=`` as the client takes it: ``None``, or an `aiohttp.ClientSession` that can
    carry the client's own ``Authorization`` header to ``origin``.

    Raises:
        InvalidArgumentError: not a session; a session with ``auth=``; or one with
            ``trust_env=True`` while the ``.netrc`` it reads has credentials for the origin's
            host: aiohttp would then refuse every request that carries the client's own.
    """
    if session is None:
        return None
    if not isinstance(session, aiohttp.ClientSession):
        raise InvalidArgumentError(
            f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
        )
    if session.auth is not None:
        # aiohttp refuses a request with both the session's auth and our header.
        raise InvalidArgumentError(
            "the session passed in has its own auth=; the client sends its own credentials, "
            "so pass a session without auth"
        )
    if session.trust_env and netrc_has_entry(origin.host):
        raise InvalidArgumentError(
            f"the session passed in has trust_env=True, and the .netrc it reads has "
            f"credentials for {origin.host}: aiohttp would send those and refuse every "
            "request that carries the client's own. Pass a session with trust_env=False; "
            "FlexClient(trust_env=True) still takes the proxy from the environment"
        )
    return session


@contextlib.contextmanager
def refused_by_aiohttp(url: str, session: aiohttp.ClientSession) -> Iterator[None]:
    """Turn the `ValueError` with which aiohttp refuses to send a request into a `FlexError`:
    for a session that trusts the environment, a ``.netrc`` entry for the origin written since
    the client was made (see `check_session`)."""
    try:
        yield
    except ValueError as exc:
        if isinstance(exc, FlexError):  # InvalidArgumentError is a ValueError too
            raise
        hint = ""
        if session.trust_env:
            hint = (
                "; the session has trust_env=True: does the .netrc it reads have credentials "
                "for this host? Pass a session with trust_env=False"
            )
        raise FlexError(f"aiohttp refused to send the request to {url}: {exc}{hint}") from exc


def check_trace_configs(
    trace_configs: Iterable[aiohttp.TraceConfig] | None, session: aiohttp.ClientSession | None
) -> list[aiohttp.TraceConfig] | None:
    """The ``trace_configs=`` for the session the client makes, checked; ``None`` if none.

    Raises:
        InvalidArgumentError: not an iterable of `aiohttp.TraceConfig`, or given with a
            ``session=`` of the caller's own.
    """
    if trace_configs is None:
        return None
    if session is not None:
        raise InvalidArgumentError(
            "trace_configs= is for the session the client makes; a session passed in as "
            "session= has its own: give it the trace configs instead"
        )
    if isinstance(trace_configs, str | bytes) or not isinstance(trace_configs, Iterable):
        raise InvalidArgumentError(
            f"trace_configs must be an iterable of aiohttp.TraceConfig, "
            f"got {type(trace_configs).__name__}"
        )
    checked = list(trace_configs)
    for config in checked:
        if not isinstance(config, aiohttp.TraceConfig):
            raise InvalidArgumentError(
                f"trace_configs must hold aiohttp.TraceConfig objects, got {config!r}"
            )
    return checked


@contextlib.contextmanager
def when_sent(callback: Callable[[float], None]) -> Iterator[None]:
    """Within the block, a request of a session made with `sent_trace_config` calls
    ``callback`` with the loop's time as it goes out (each time it is sent)."""
    token = _on_sent.set(callback)
    try:
        yield
    finally:
        _on_sent.reset(token)


async def _headers_sent(
    session: aiohttp.ClientSession,
    context: object,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    callback = _on_sent.get()
    if callback is not None:
        callback(asyncio.get_running_loop().time())


def sent_trace_config() -> aiohttp.TraceConfig:
    """The trace config by which a session the client makes tells `when_sent` when a
    request goes out: as its headers are written, which follows at once.

    It goes last in the session's list: aiohttp awaits each config's callbacks in turn
    first, so that what they take is part of the request's lateness."""
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_headers_sent)
    return config
