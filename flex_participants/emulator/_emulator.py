"""FlexEmulator: the settings, the lifecycle of the server, and what a test may ask of it."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypedDict

from aiohttp import web

from .._arguments import check_burst, check_count, check_quantity, check_rate
from .._errors import InvalidArgumentError
from ._app import CONCURRENCY_CODES, Endpoint
from ._budget import check_rate_schedule
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


MAX_CHANNELS: Final = 1_000_000
"""The most channels an emulator generates (``channels``): each takes some 800 bytes, so a
million take about 0.8 GB and a few seconds to build. More can be added with `add_channel`."""


def check_channels(channels: object) -> int:
    """Return ``channels`` if it is a number of channels to generate: 0 to `MAX_CHANNELS`.

    Raises:
        InvalidArgumentError: it is anything else.
    """
    return check_count("channels", channels, minimum=0, maximum=MAX_CHANNELS)


# Requests still running when the emulator stops get this long to finish.
_SHUTDOWN_TIMEOUT: Final = 1.0


def _check_seconds(name: str, value: float | None, *, optional: bool = False) -> None:
    if not (value is None and optional):
        check_quantity(name, value, unit="seconds")


def _check_count(name: str, value: int | None, minimum: int, *, optional: bool = False) -> None:
    if not (value is None and optional):
        check_count(name, value, minimum=minimum)


def _check_concurrency_code(value: int) -> None:
    if type(value) is not int or value not in CONCURRENCY_CODES:
        raise InvalidArgumentError(
            f"concurrency_code must be one of {sorted(CONCURRENCY_CODES)}, got {value!r}"
        )


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
    (400, code 20001, for a bad parameter). It enforces both of Twilio's limits, if given:
    a rate budget (``rate_limit``, ``burst``) and a concurrency limit (``max_in_flight``),
    answered 429 with Twilio's error body. Every answer of the API carries
    ``Twilio-Concurrent-Requests``: the requests to the API in flight when it arrived,
    itself included. Faults can be planned (`add_fault`), and every request is counted and
    logged (`stats`). The counters are also served, without auth, at
    ``GET /__emulator__/stats`` (``?log=0`` leaves out the log) and reset by
    ``POST /__emulator__/reset``.

    The limits are checked as a request arrives, before its credentials: ``max_in_flight``
    first, then the bucket, so that a request refused for either takes no token. Their 429s
    are answered after ``latency``, as every other answer is.

    Use it as ``async with FlexEmulator(...) as emulator:``, or call `start` and `stop`.
    ``latency``, ``rate_limit``, ``burst``, ``max_in_flight``, ``concurrency_code`` and
    ``retry_after`` may be changed while it runs; ``rate_schedule`` changes the rate by
    itself, as another application that starts and stops spending the same budget would.

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
        channels: how many channels to generate from the seed, at most `MAX_CHANNELS`
            (1,000,000): sizes from 0 to a few thousand participants, most small; all five
            participant types.
        latency: seconds before every answer of the API, 429s included: the network's
            round trip.
        rate_limit: requests a second allowed: a token bucket refilled continuously at this
            rate (by the event loop's clock), full when the server starts. A request that
            finds less than one whole token is answered 429 with code 20429 and takes none.
            ``None``: no rate limit. Twilio documents 20 a second per endpoint and account.
        burst: the most tokens the bucket holds, >= 1; ``None``: a quarter second of
            requests, ``max(1, round(rate_limit / 4))`` (5 at 20 a second). Only with
            ``rate_limit``.
        rate_schedule: steps of the rate, ``(seconds, rate)`` pairs: ``seconds`` after the
            first request to the API (since the start, or since the last `reset_stats`),
            the rate becomes ``rate``, as if `rate_limit` were set then (the tokens held are
            kept; a ``burst`` given stays, else it follows the rate). ``seconds`` are >= 0
            and increasing. ``[(5.0, 10.0), (13.0, 20.0)]`` with ``rate_limit=20``: 20 a
            second, 10 from 5 s after the first request, 20 again from 13 s. Timed from the
            first request rather than the start, so that the steps fall at the same point of
            every run, however long the client took to start. Only with ``rate_limit``.
        max_in_flight: above this many requests admitted and in flight at once, a request
            is answered 429 with ``concurrency_code``; ``None``: no limit.
        concurrency_code: Twilio's code for those 429s: 20429 ("Too many requests"), or
            45780 ("Too many concurrent requests"), as Flex also answers.
        retry_after: if set, the 429s of both limits carry ``Retry-After`` with this many
            seconds (Twilio documents none).
        log_limit: the most `RequestRecord` kept in ``stats.log``; later ones are counted
            in ``stats.log_dropped``. ``None``: no limit.

    Raises:
        ValueError: a number is out of range, ``burst`` without ``rate_limit``, a
            ``concurrency_code`` other than 20429 and 45780, an API key without its
            secret (or the reverse), or a ``rate_schedule`` that is not increasing or
            comes without ``rate_limit``.
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
        rate_limit: float | None = None,
        burst: int | None = None,
        rate_schedule: Sequence[tuple[float, float]] | None = None,
        max_in_flight: int | None = None,
        concurrency_code: int = 20429,
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
        check_channels(channels)
        _check_seconds("latency", latency)
        if rate_limit is not None:
            check_rate("rate_limit", rate_limit)
        check_burst(burst, rate_limit)
        schedule = check_rate_schedule(rate_schedule, rate_limit)
        _check_count("max_in_flight", max_in_flight, 1, optional=True)
        _check_concurrency_code(concurrency_code)
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
            concurrency_code=concurrency_code,
            rate_limit=None if rate_limit is None else float(rate_limit),
            burst=burst,
            rate_schedule=schedule,
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
        self._endpoint.start_budget(asyncio.get_running_loop().time)
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
    def rate_limit(self) -> float | None:
        """Requests a second the token bucket allows now (the `rate_schedule`'s steps
        due included); ``None``: no rate limit.

        Changed while it runs, the tokens held are kept (up to the new `burst`); set from
        ``None``, the bucket starts full. Set to ``None``, the `burst` given is forgotten.
        The `rate_schedule`'s later steps still apply.

        Raises:
            ValueError: (when set) not a finite number > 0, nor ``None``.
        """
        return self._endpoint.rate_limit

    @rate_limit.setter
    def rate_limit(self, value: float | None) -> None:
        if value is not None:
            check_rate("rate_limit", value)
        self._endpoint.set_rate_limit(None if value is None else float(value))

    @property
    def burst(self) -> int | None:
        """The most tokens the bucket holds, as given or else ``max(1, round(rate_limit / 4))``
        (``None`` without `rate_limit`).

        Set to ``None``, it follows the rate again. Made smaller while it runs, the tokens
        above it are dropped.

        Raises:
            ValueError: (when set) not an integer >= 1, nor ``None``; or set without a
                `rate_limit`.
        """
        return self._endpoint.burst

    @burst.setter
    def burst(self, value: int | None) -> None:
        check_burst(value, self._endpoint.rate_limit)
        self._endpoint.set_burst(value)

    @property
    def rate_schedule(self) -> tuple[tuple[float, float], ...]:
        """The steps of the rate, ``(seconds, rate)`` pairs, as given (empty: none)."""
        return self._endpoint.rate_schedule

    @property
    def max_in_flight(self) -> int | None:
        """Above this many requests in flight, 429 with `concurrency_code`; ``None``: no limit.

        Raises:
            ValueError: (when set) not an integer >= 1, nor ``None``.
        """
        return self._endpoint.max_in_flight

    @max_in_flight.setter
    def max_in_flight(self, value: int | None) -> None:
        _check_count("max_in_flight", value, 1, optional=True)
        self._endpoint.max_in_flight = value

    @property
    def concurrency_code(self) -> int:
        """Twilio's code of the 429s for `max_in_flight`: 20429, or 45780.

        Raises:
            ValueError: (when set) any other value.
        """
        return self._endpoint.concurrency_code

    @concurrency_code.setter
    def concurrency_code(self, value: int) -> None:
        _check_concurrency_code(value)
        self._endpoint.concurrency_code = value

    @property
    def retry_after(self) -> float | None:
        """Seconds sent as ``Retry-After`` with the 429s of both limits; ``None``: none."""
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
        """Zero the counters and start a new log (``stats.log`` is a new list).

        With a `rate_schedule` under way, the rate goes back to the one it started from (the
        tokens held are kept), and the schedule starts again at the next request, so that
        each run of a benchmark meets the same schedule. ``POST /__emulator__/reset`` does
        the same.
        """
        self._endpoint.reset()
