"""FlexEmulator: the settings, the lifecycle of the server, and what a test may ask of it."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypedDict

from aiohttp import web

from .._arguments import check_count, check_quantity
from ._app import Endpoint
from ._data import Dataset, StoredChannel
from ._faults import Fault, FaultPlan
from ._stats import EmulatorStats

__all__ = ["DEFAULT_ACCOUNT_SID", "DEFAULT_AUTH_TOKEN", "ClientKwargs", "FlexEmulator"]

DEFAULT_ACCOUNT_SID: Final = "AC" + "0123456789abcdef" * 2
"""The account SID an emulator accepts unless given another."""
DEFAULT_AUTH_TOKEN: Final = "flex-emulator-auth-token"  # noqa: S105 - a published default
"""The auth token an emulator accepts unless given another."""


class ClientKwargs(TypedDict):
    """The keyword arguments of ``FlexClient`` that point it at an emulator."""

    base_url: str
    account_sid: str
    auth_token: str


# Requests still running when the emulator stops get this long to finish.
_SHUTDOWN_TIMEOUT: Final = 1.0


def _check_seconds(name: str, value: float | None, *, optional: bool = False) -> None:
    if not (value is None and optional):
        check_quantity(name, value, unit="seconds")


def _check_count(name: str, value: int | None, minimum: int, *, optional: bool = False) -> None:
    if not (value is None and optional):
        check_count(name, value, minimum=minimum)


def _url_host(host: str) -> str:
    """The host to put in URLs: a wildcard address is reached on loopback; IPv6 is bracketed."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return f"[{address}]" if address.version == 6 else str(address)


class FlexEmulator:
    """Flex's "List all Participants for a Channel" endpoint, served over HTTP on loopback.

    An aiohttp server that answers ``GET /v1/Interactions/{kd}/Channels/{uo}/Participants`` as
    Twilio does: Basic auth (401, code 20003), unknown or malformed SIDs (404, code 20404),
    paging by ``PageSize``, ``Page`` and ``PageToken`` with ``meta`` URLs on `base_url`
    (400, code 20001, for a bad parameter), and 429 (code 20429) above ``max_in_flight``
    requests at once. Faults can be planned (`add_fault`), and every request is counted
    and logged (`stats`). The counters are also served, without auth, at
    ``GET /__emulator__/stats`` (``?log=0`` leaves out the log) and reset by
    ``POST /__emulator__/reset``.

    Use it as ``async with FlexEmulator(...) as emulator:``, or call `start` and `stop`.
    ``latency``, ``max_in_flight`` and ``retry_after`` may be changed while it runs.

    Args:
        host: the address to listen on.
        port: the port to listen on; 0 picks a free one.
        account_sid: the account SID accepted as Basic-auth username.
        auth_token: the auth token accepted with it.
        api_key: an API key SID also accepted as username, with ``api_secret``.
        api_secret: the API key's secret.
        seed: the seed of the generated data; ``None`` is seed 0. The same seed gives the
            same channels and participants, including those of `add_channel` calls made in
            the same order.
        channels: how many channels to generate from the seed: sizes from 0 to a few
            thousand participants, most small; all five participant types.
        latency: seconds added to every request to the API (429s for ``max_in_flight``
            excepted).
        max_in_flight: above this many requests in flight at once, a request is answered
            429 with code 20429; ``None``: no limit.
        retry_after: if set, those 429s carry ``Retry-After`` with this many seconds.
        log_limit: the most `RequestRecord` kept in ``stats.log``; later ones are counted
            in ``stats.log_dropped``. ``None``: no limit.

    Raises:
        ValueError: a number is out of range, or an API key without its secret (or the
            reverse).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        api_key: str | None = None,
        api_secret: str | None = None,
        seed: int | None = None,
        channels: int = 0,
        latency: float = 0.0,
        max_in_flight: int | None = None,
        retry_after: float | None = None,
        log_limit: int | None = 100_000,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty string, got {host!r}")
        check_count("port", port, minimum=0, maximum=65535)
        if not (isinstance(account_sid, str) and account_sid):
            raise ValueError("account_sid must be a non-empty string")
        if not (isinstance(auth_token, str) and auth_token):
            raise ValueError("auth_token must be a non-empty string")
        if (api_key is None) != (api_secret is None) or not all(
            isinstance(value, str) and value for value in (api_key, api_secret) if value is not None
        ):
            raise ValueError("api_key and api_secret go together, as non-empty strings")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        _check_count("channels", channels, 0)
        _check_seconds("latency", latency)
        _check_count("max_in_flight", max_in_flight, 1, optional=True)
        _check_seconds("retry_after", retry_after, optional=True)
        _check_count("log_limit", log_limit, 0, optional=True)
        self._host = host
        self._port = port
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._api_key = api_key
        self._api_secret = api_secret
        self._seed = 0 if seed is None else seed
        credentials = [(account_sid, auth_token)]
        if api_key is not None and api_secret is not None:
            credentials.append((api_key, api_secret))
        self._faults = FaultPlan()
        self._dataset = Dataset(self._seed, channels)
        self._endpoint = Endpoint(
            self._dataset,
            self._faults,
            credentials,
            latency=float(latency),
            max_in_flight=max_in_flight,
            retry_after=retry_after,
            log_limit=log_limit,
        )
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    def __repr__(self) -> str:
        where = self._base_url or "not running"
        return f"<FlexEmulator {where} channels={len(self._dataset)} seed={self._seed}>"

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving.

        Raises:
            RuntimeError: it is already running.
            OSError: the address cannot be listened on (for example, the port is taken).
        """
        if self._runner is not None:
            raise RuntimeError("this FlexEmulator is already running")
        runner = web.AppRunner(
            self._endpoint.application(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        port = runner.addresses[0][1]
        self._runner = runner
        self._base_url = f"http://{_url_host(self._host)}:{port}"
        self._endpoint.base_url = self._base_url

    async def stop(self) -> None:
        """Stop serving; requests still running get a second to finish. Idempotent."""
        runner, self._runner = self._runner, None
        self._base_url = None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._runner is not None

    # -- where and who --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``, no trailing slash: the origin to give the client.

        Raises:
            RuntimeError: the emulator is not running.
        """
        if self._base_url is None:
            raise RuntimeError("this FlexEmulator is not running: start it first")
        return self._base_url

    @property
    def port(self) -> int:
        """The port it listens on (the one picked, if it was given 0).

        Raises:
            RuntimeError: the emulator is not running.
        """
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def account_sid(self) -> str:
        """The account SID accepted as Basic-auth username."""
        return self._account_sid

    @property
    def auth_token(self) -> str:
        """The auth token accepted with `account_sid`."""
        return self._auth_token

    @property
    def api_key(self) -> str | None:
        """The API key SID also accepted, if any."""
        return self._api_key

    @property
    def api_secret(self) -> str | None:
        """The secret of `api_key`, if any."""
        return self._api_secret

    @property
    def seed(self) -> int:
        """The seed of the generated data."""
        return self._seed

    def client_kwargs(self) -> ClientKwargs:
        """``base_url``, ``account_sid`` and ``auth_token``: ``FlexClient(**kwargs)`` talks to it.

        Raises:
            RuntimeError: the emulator is not running.
        """
        return {
            "base_url": self.base_url,
            "account_sid": self._account_sid,
            "auth_token": self._auth_token,
        }

    # -- settings that may change while it runs -------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds added to every request to the API."""
        return self._endpoint.latency

    @latency.setter
    def latency(self, value: float) -> None:
        _check_seconds("latency", value)
        self._endpoint.latency = float(value)

    @property
    def max_in_flight(self) -> int | None:
        """Above this many requests in flight, 429 with code 20429; ``None``: no limit."""
        return self._endpoint.max_in_flight

    @max_in_flight.setter
    def max_in_flight(self, value: int | None) -> None:
        _check_count("max_in_flight", value, 1, optional=True)
        self._endpoint.max_in_flight = value

    @property
    def retry_after(self) -> float | None:
        """Seconds sent as ``Retry-After`` with the 429s for ``max_in_flight``; ``None``: none."""
        return self._endpoint.retry_after

    @retry_after.setter
    def retry_after(self, value: float | None) -> None:
        _check_seconds("retry_after", value, optional=True)
        self._endpoint.retry_after = value

    # -- data -----------------------------------------------------------------------------

    def add_channel(
        self,
        interaction_sid: str | None = None,
        channel_sid: str | None = None,
        participants: int | Sequence[Mapping[str, Any]] = 0,
    ) -> tuple[str, str]:
        """Add a channel and return its ``(interaction_sid, channel_sid)``.

        It may be called while the emulator runs.

        Args:
            interaction_sid: the ``KD...`` SID; ``None`` generates one.
            channel_sid: the ``UO...`` SID; ``None`` generates one.
            participants: a number of participants to generate (deterministic for the seed
                and the order of calls), or the participants as JSON-ready mappings, served
                as given (a copy is kept).

        Raises:
            ValueError: a SID does not match its pattern, the channel exists already, or a
                negative number of participants.
            TypeError: ``participants`` is neither an int nor a sequence of JSON-ready
                mappings.
        """
        return self._dataset.add(interaction_sid, channel_sid, participants)

    @property
    def channels(self) -> list[tuple[str, str]]:
        """Every channel's ``(interaction_sid, channel_sid)``, in the order added (a new list)."""
        return self._dataset.keys()

    def participants_of(self, interaction_sid: str, channel_sid: str) -> list[dict[str, Any]]:
        """Every participant of a channel, in order, exactly as the server serves them.

        The dicts are fresh: changing them changes nothing that is served.

        Raises:
            KeyError: there is no such channel.
        """
        return self._stored(interaction_sid, channel_sid).participants()

    def channel_size(self, interaction_sid: str, channel_sid: str) -> int:
        """How many participants a channel has.

        Raises:
            KeyError: there is no such channel.
        """
        return self._stored(interaction_sid, channel_sid).size

    def iter_participants(
        self, interaction_sid: str, channel_sid: str, *, chunk: int = 1000
    ) -> Iterator[dict[str, Any]]:
        """Every participant of a channel, in order, made ``chunk`` at a time.

        Like `participants_of`, but never holds the whole channel: for checking channels of
        millions of participants against what a client received. The dicts may be the
        server's own: read them, do not change them.

        Raises:
            KeyError: there is no such channel.
            ValueError: ``chunk`` is not a positive integer.
        """
        check_count("chunk", chunk, minimum=1)
        stored = self._stored(interaction_sid, channel_sid)
        for start in range(0, stored.size, chunk):
            yield from stored.page(start, start + chunk)

    def _stored(self, interaction_sid: str, channel_sid: str) -> StoredChannel:
        channel = self._dataset.get(interaction_sid, channel_sid)
        if channel is None:
            raise KeyError((interaction_sid, channel_sid))
        return channel

    # -- faults ---------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        """Plan ``fault``: it answers the next ``fault.times`` requests that match it.

        Raises:
            TypeError: ``fault`` is not a `Fault`.
        """
        self._faults.add(fault)

    def clear_faults(self) -> None:
        """Drop every fault that has not fired yet."""
        self._faults.clear()

    @property
    def pending_faults(self) -> list[tuple[Fault, int]]:
        """Each planned fault with how many more times it will fire, in the order added."""
        return self._faults.pending()

    # -- counters -------------------------------------------------------------------------

    @property
    def stats(self) -> EmulatorStats:
        """The live counters and request log; see `EmulatorStats`."""
        return self._endpoint.stats

    def reset_stats(self) -> None:
        """Zero the counters and start a new log (``stats.log`` is a new list)."""
        self._endpoint.stats.reset()
