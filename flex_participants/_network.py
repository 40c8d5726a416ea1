"""The way to the origin: the proxy (given, or from the environment), its credentials, and TLS.

The client finds the proxy itself rather than leaving it to aiohttp's ``trust_env``: that
would also read ``.netrc`` for the origin's host, and a ``.netrc`` entry for it (one written
for curl, say) makes aiohttp refuse every request that carries the client's own
``Authorization`` header. The environment is read with the same standard-library functions
aiohttp uses (``urllib.request.getproxies`` and ``proxy_bypass``), once, when the client is
made: the client talks to one origin only.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable
from ssl import SSLContext
from typing import Any, TypedDict

import aiohttp
from yarl import URL

from ._errors import InvalidArgumentError

__all__ = ["Route", "check_trace_configs", "route_to"]


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
