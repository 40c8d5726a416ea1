"""Proxies and TLS: ``proxy=``, ``trust_env=`` and ``ssl=``, over loopback, against the emulator."""

from __future__ import annotations

import gzip
import json
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from flex_participants import (
    FlexAPIError,
    FlexClient,
    FlexError,
    InvalidArgumentError,
    RetryPolicy,
    TransportError,
)
from flex_participants.emulator import FlexEmulator

from .helpers import KD, Credentials, assert_no_secret, secrets_of
from .proxy_servers import ForwardingProxy, TLSFront
from .server import PagedServer, Seen

PROXY_USER = "alice"
PROXY_SECRET = "pr0xy-s3cret-do-not-leak"
PROXY_CREDENTIALS = (PROXY_USER, PROXY_SECRET)
NO_RETRY = RetryPolicy(max_attempts=1, patience=0.0)


def proxy_secrets() -> tuple[str, ...]:
    """The proxy's password, its Proxy-Authorization value, and that value's base64."""
    return secrets_of(PROXY_USER, PROXY_SECRET)


def with_credentials(proxy: ForwardingProxy) -> str:
    return f"http://{PROXY_USER}:{PROXY_SECRET}@127.0.0.1:{proxy.port}"


@pytest.fixture(autouse=True)
def no_proxy_in_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxy variable of the machine running the tests, and no .netrc of its own."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[FlexEmulator]:
    async with FlexEmulator() as running:
        running.add_channel(participants=12)
        yield running


@pytest_asyncio.fixture
async def proxy() -> AsyncIterator[ForwardingProxy]:
    async with ForwardingProxy() as running:
        yield running


@pytest_asyncio.fixture
async def guarded_proxy() -> AsyncIterator[ForwardingProxy]:
    """A proxy that asks for ``PROXY_CREDENTIALS``."""
    async with ForwardingProxy(PROXY_CREDENTIALS) as running:
        yield running


@pytest_asyncio.fixture
async def tls_front(emulator: FlexEmulator) -> AsyncIterator[TLSFront]:
    async with TLSFront(emulator.port) as running:
        yield running


def emulator_client(emulator: FlexEmulator, **options: Any) -> FlexClient:
    options.setdefault("rate_limit", None)
    return FlexClient(**{**emulator.client_kwargs(), **options})


def tls_client(emulator: FlexEmulator, front: TLSFront, **options: Any) -> FlexClient:
    """A client of the emulator behind ``front``, trusting its CA unless told otherwise."""
    options.setdefault("ssl", front.client_context())
    return emulator_client(emulator, base_url=front.base_url, **options)


async def first_page_size(client: FlexClient, emulator: FlexEmulator) -> int:
    """Fetch one page of the first channel (its ``next_page_url`` names the emulator)."""
    async with client:
        page = await client.fetch_page(*emulator.channels[0], page_size=5)
    return len(page.participants)


# -- proxy= -------------------------------------------------------------------------------


@pytest.mark.parametrize("borrowed", [False, True], ids=["own-session", "session-passed-in"])
async def test_every_request_goes_through_the_proxy_given(
    emulator: FlexEmulator, proxy: ForwardingProxy, borrowed: bool
) -> None:
    async with aiohttp.ClientSession() as session:
        client = emulator_client(emulator, proxy=proxy.url, session=session if borrowed else None)
        async with client:
            stream = client.participants(*emulator.channels[0], page_size=5)
            delivered = [p async for p in stream]

    assert len(delivered) == 12
    assert len(proxy.seen) == emulator.stats.requests == client.requests_sent
    assert all(seen.target.startswith(emulator.base_url + "/v1/") for seen in proxy.seen)


async def test_proxy_credentials_reach_the_proxy_as_proxy_authorization(
    emulator: FlexEmulator, guarded_proxy: ForwardingProxy
) -> None:
    client = emulator_client(emulator, proxy=with_credentials(guarded_proxy))

    assert await first_page_size(client, emulator) == 5
    assert [seen.headers.get("proxy-authorization") for seen in guarded_proxy.seen] == [
        aiohttp.encode_basic_auth(*PROXY_CREDENTIALS)
    ]


async def test_an_https_origin_is_reached_through_a_connect_tunnel(
    emulator: FlexEmulator, guarded_proxy: ForwardingProxy, tls_front: TLSFront
) -> None:
    client = tls_client(emulator, tls_front, proxy=with_credentials(guarded_proxy))

    assert await first_page_size(client, emulator) == 5
    assert [(seen.method, seen.target) for seen in guarded_proxy.seen] == [
        ("CONNECT", f"127.0.0.1:{tls_front.port}")
    ]


async def test_proxy_credentials_never_reach_the_origin_inside_the_tunnel(
    emulator: FlexEmulator, guarded_proxy: ForwardingProxy, tls_front: TLSFront
) -> None:
    client = tls_client(emulator, tls_front, proxy=with_credentials(guarded_proxy))
    await first_page_size(client, emulator)

    received = bytes(tls_front.received)
    assert b"authorization: basic" in received.lower()  # the client's own, for the origin
    assert b"proxy-authorization" not in received.lower()
    assert not any(secret.encode() in received for secret in proxy_secrets())


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_proxy_that_refuses_its_credentials_leaves_them_out_of_the_error(
    emulator: FlexEmulator, tls_front: TLSFront, scheme: str
) -> None:
    async with ForwardingProxy(("alice", "another-password")) as strict:
        options: dict[str, Any] = {"proxy": with_credentials(strict), "retry": NO_RETRY}
        if scheme == "https":
            client = tls_client(emulator, tls_front, **options)
        else:
            client = emulator_client(emulator, **options)
        with pytest.raises((TransportError, FlexAPIError)) as caught:
            await first_page_size(client, emulator)

    assert "407" in str(caught.value)
    assert_no_secret(caught.value, *proxy_secrets(), *secrets_of())


def test_proxy_credentials_are_kept_out_of_the_clients_repr() -> None:
    client = FlexClient(
        account_sid="AC" + "0" * 32,
        auth_token="token",
        proxy=f"http://{PROXY_USER}:{PROXY_SECRET}@proxy.example.com:3128",
    )

    assert PROXY_SECRET not in repr(client)
    assert PROXY_SECRET not in repr(vars(client))
    assert "proxy.example.com:3128 with credentials" in repr(client._route)


@pytest.mark.parametrize(
    "proxy",
    [
        "https://proxy.example.com:3128",
        "socks5://proxy.example.com:1080",
        "proxy.example.com:3128",
        "http://proxy.example.com:3128/some/path",
        "http://proxy.example.com:3128/?x=1",
        "",
        b"http://proxy.example.com:3128",
        3128,
    ],
)
def test_a_proxy_that_is_no_http_url_of_a_host_is_refused(proxy: object) -> None:
    with pytest.raises(InvalidArgumentError, match="proxy"):
        FlexClient(account_sid="AC" + "0" * 32, auth_token="token", proxy=proxy)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "proxy",
    [
        f"https://alice:{PROXY_SECRET}@proxy.example.com:3128",
        f"http://alice:{PROXY_SECRET}@proxy.example.com:3128/path",
        f"socks5://alice:{PROXY_SECRET}@proxy.example.com:1080",
    ],
)
def test_a_refused_proxy_url_is_not_echoed_with_its_credentials(proxy: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        FlexClient(account_sid="AC" + "0" * 32, auth_token="token", proxy=proxy)

    assert_no_secret(caught.value, PROXY_SECRET)


# -- trust_env= ---------------------------------------------------------------------------


async def test_with_trust_env_the_http_proxy_of_the_environment_is_used(
    emulator: FlexEmulator, guarded_proxy: ForwardingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", with_credentials(guarded_proxy))
    client = emulator_client(emulator, trust_env=True)

    assert await first_page_size(client, emulator) == 5
    assert [seen.headers.get("proxy-authorization") for seen in guarded_proxy.seen] == [
        aiohttp.encode_basic_auth(*PROXY_CREDENTIALS)
    ]


async def test_with_trust_env_an_https_origin_takes_the_https_proxy_of_the_environment(
    emulator: FlexEmulator,
    proxy: ForwardingProxy,
    tls_front: TLSFront,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    client = tls_client(emulator, tls_front, trust_env=True)

    assert await first_page_size(client, emulator) == 5
    assert [seen.method for seen in proxy.seen] == ["CONNECT"]


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*"])
async def test_with_trust_env_a_host_in_no_proxy_is_reached_directly(
    emulator: FlexEmulator,
    proxy: ForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    client = emulator_client(emulator, trust_env=True)

    assert await first_page_size(client, emulator) == 5
    assert proxy.seen == []
    assert emulator.stats.requests == 1


async def test_a_bypassed_proxy_gets_no_credentials_and_neither_does_the_origin(
    emulator: FlexEmulator, proxy: ForwardingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The origin is reached directly, through a recording front: no Proxy-Authorization.
    async with TLSFront(emulator.port) as front:
        monkeypatch.setenv("HTTPS_PROXY", with_credentials(proxy))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        await first_page_size(tls_client(emulator, front, trust_env=True), emulator)

    assert proxy.seen == []
    assert b"proxy-authorization" not in bytes(front.received).lower()


async def test_without_trust_env_the_environment_is_ignored(
    emulator: FlexEmulator, proxy: ForwardingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)

    await first_page_size(emulator_client(emulator), emulator)

    assert proxy.seen == []


async def test_an_explicit_proxy_wins_over_the_environment(
    emulator: FlexEmulator, proxy: ForwardingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ForwardingProxy() as other:
        monkeypatch.setenv("HTTP_PROXY", other.url)
        await first_page_size(emulator_client(emulator, proxy=proxy.url, trust_env=True), emulator)

    assert (len(proxy.seen), len(other.seen)) == (1, 0)


async def test_trust_env_applies_to_a_session_passed_in(
    emulator: FlexEmulator, proxy: ForwardingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with aiohttp.ClientSession() as session:
        await first_page_size(emulator_client(emulator, session=session, trust_env=True), emulator)

    assert len(proxy.seen) == 1


async def test_a_netrc_entry_for_the_origin_neither_replaces_nor_breaks_the_credentials(
    emulator: FlexEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # aiohttp's own trust_env would read it, and refuse a request with our Authorization.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone-else password not-the-token\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))

    # The emulator accepts only its own credentials: a page proves they were ours.
    size = await first_page_size(emulator_client(emulator, trust_env=True), emulator)

    assert size == 5


def write_netrc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> None:
    """A .netrc of ``text``, where aiohttp's trust_env looks for it."""
    netrc = tmp_path / "netrc"
    netrc.write_text(text)
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))


@pytest.mark.parametrize(
    "entry",
    [
        "machine 127.0.0.1 login someone-else password not-the-token\n",
        "default login someone-else password not-the-token\n",
    ],
    ids=["for-the-host", "default"],
)
async def test_a_trusting_session_that_would_read_netrc_credentials_is_refused_when_made(
    emulator: FlexEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, entry: str
) -> None:
    write_netrc(monkeypatch, tmp_path, entry)
    async with aiohttp.ClientSession(trust_env=True) as session:
        with pytest.raises(InvalidArgumentError, match=r"trust_env=True.*\.netrc.*127\.0\.0\.1"):
            emulator_client(emulator, session=session)


async def test_a_trusting_session_whose_netrc_names_other_hosts_only_works(
    emulator: FlexEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_netrc(monkeypatch, tmp_path, "machine example.com login someone password secret\n")
    async with aiohttp.ClientSession(trust_env=True) as session:
        assert await first_page_size(emulator_client(emulator, session=session), emulator) == 5


async def test_a_netrc_entry_written_after_the_client_was_made_fails_with_a_flex_error(
    emulator: FlexEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession(trust_env=True) as session:
        client = emulator_client(emulator, session=session)
        write_netrc(monkeypatch, tmp_path, "machine 127.0.0.1 login someone password secret\n")
        with pytest.raises(FlexError, match="trust_env=True") as raised:
            await first_page_size(client, emulator)
    assert not isinstance(raised.value, InvalidArgumentError)
    assert isinstance(raised.value.__cause__, ValueError)


def test_an_https_proxy_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"https://alice:{PROXY_SECRET}@proxy.example.com:3128")

    with pytest.raises(InvalidArgumentError, match="HTTPS_PROXY") as caught:
        FlexClient(account_sid="AC" + "0" * 32, auth_token="token", trust_env=True)
    assert_no_secret(caught.value, PROXY_SECRET)


@pytest.mark.parametrize("trust_env", ["yes", 1, None])
def test_trust_env_must_be_a_bool(trust_env: object) -> None:
    with pytest.raises(InvalidArgumentError, match="trust_env"):
        FlexClient(account_sid="AC" + "0" * 32, auth_token="token", trust_env=trust_env)  # type: ignore[arg-type]


# -- ssl= ---------------------------------------------------------------------------------


async def test_an_ssl_context_that_trusts_the_servers_ca_reaches_it(
    emulator: FlexEmulator, tls_front: TLSFront
) -> None:
    client = tls_client(emulator, tls_front)

    assert await first_page_size(client, emulator) == 5


async def test_without_the_servers_ca_its_certificate_is_refused_and_nothing_is_sent(
    emulator: FlexEmulator, tls_front: TLSFront
) -> None:
    client = tls_client(emulator, tls_front, ssl=None, retry=NO_RETRY)

    with pytest.raises(TransportError, match="certificate"):
        await first_page_size(client, emulator)
    assert tls_front.received == b""
    assert emulator.stats.requests == 0


async def test_an_ssl_context_works_with_a_session_passed_in(
    emulator: FlexEmulator, tls_front: TLSFront
) -> None:
    async with aiohttp.ClientSession() as session:
        client = tls_client(emulator, tls_front, session=session)

        assert await first_page_size(client, emulator) == 5


@pytest.mark.parametrize("value", [False, True, "/etc/ssl/certs/ca.pem", ssl.Purpose.SERVER_AUTH])
def test_ssl_must_be_an_ssl_context(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match="ssl"):
        FlexClient(account_sid="AC" + "0" * 32, auth_token="token", ssl=value)  # type: ignore[arg-type]


async def test_a_session_that_does_not_decompress_is_sent_bodies_it_can_read(
    paged_server: PagedServer, credentials: Credentials
) -> None:
    uo = paged_server.add_channel(1, 3)

    async def gzip_if_asked(seen: Seen) -> web.StreamResponse | None:
        # As Twilio does: a gzip body to a client that accepts one.
        if "gzip" not in seen.request.headers.get("Accept-Encoding", ""):
            return None
        body = json.dumps(paged_server._page(seen.request, uo, seen.page)).encode()
        return web.Response(
            body=gzip.compress(body),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    paged_server.hook = gzip_if_asked
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with FlexClient(
            **credentials, base_url=paged_server.base_url, session=session, rate_limit=None
        ) as client:
            page = await client.fetch_page(KD, uo)
    assert len(page.participants) == 3
