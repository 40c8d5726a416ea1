"""`_credentials`: where a client's credentials come from, and that they show nowhere."""

from __future__ import annotations

import pickle

import aiohttp
import pytest
from aioresponses import aioresponses

from flex_participants import FlexClient, InvalidArgumentError
from flex_participants._credentials import resolve_credentials

from .helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    KD,
    UO,
    Credentials,
    headers_of_one_fetch,
    page_body,
    participants_url,
    sent_headers,
)


async def test_sends_account_sid_and_token_as_basic_auth(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    headers = await headers_of_one_fetch(mock_http, credentials)
    assert headers["Authorization"] == aiohttp.encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN)


async def test_reads_credentials_from_the_environment(
    mock_http: aioresponses, credentials: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "from-env")
    mock_http.get(participants_url(), payload=page_body(range(1)))
    async with FlexClient() as client:
        await client.fetch_page(KD, UO)
    [headers] = sent_headers(mock_http, participants_url())
    assert headers["Authorization"] == aiohttp.encode_basic_auth(ACCOUNT_SID, "from-env")


async def test_api_key_and_secret_are_the_basic_auth_pair_when_given(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(participants_url(), payload=page_body(range(1)))
    async with FlexClient(**credentials, api_key="SK" + "1" * 32, api_secret="secret") as client:
        await client.fetch_page(KD, UO)
    [headers] = sent_headers(mock_http, participants_url())
    assert headers["Authorization"] == aiohttp.encode_basic_auth("SK" + "1" * 32, "secret")


def test_no_credentials_is_an_error_when_the_client_is_built(credentials: Credentials) -> None:
    with pytest.raises(InvalidArgumentError, match="no usable credentials"):
        FlexClient()


def test_an_api_key_without_its_secret_is_an_error(credentials: Credentials) -> None:
    with pytest.raises(InvalidArgumentError, match="api_secret"):
        FlexClient(api_key="SK" + "1" * 32)


def test_a_colon_in_the_username_is_an_error(credentials: Credentials) -> None:
    with pytest.raises(InvalidArgumentError, match="unusable credentials"):
        FlexClient("AC:x", "token")


def test_repr_never_shows_the_token(credentials: Credentials) -> None:
    client = FlexClient(**credentials)
    assert AUTH_TOKEN not in repr(client)
    assert ACCOUNT_SID in repr(client)


def test_repr_never_shows_the_api_secret(credentials: Credentials) -> None:
    client = FlexClient(api_key="SK" + "1" * 32, api_secret="s3cr3t-value")
    assert "s3cr3t-value" not in repr(client)
    assert "s3cr3t-value" not in repr(vars(client))


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"TWILIO_ACCOUNT_SID": "AC" + "9" * 32, "TWILIO_AUTH_TOKEN": "from-env"}

    pair = resolve_credentials(ACCOUNT_SID, AUTH_TOKEN, None, None, environ)

    assert pair.header() == aiohttp.encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN)


def test_an_api_key_in_the_environment_wins_over_the_account_pair() -> None:
    environ = {"TWILIO_API_KEY": "SK" + "1" * 32, "TWILIO_API_SECRET": "secret"}

    pair = resolve_credentials(ACCOUNT_SID, AUTH_TOKEN, None, None, environ)

    assert pair.header() == aiohttp.encode_basic_auth("SK" + "1" * 32, "secret")


@pytest.mark.parametrize("name", ["account_sid", "auth_token", "api_key", "api_secret"])
def test_a_credential_that_is_not_a_string_is_refused(name: str) -> None:
    given: dict[str, object] = dict.fromkeys(("account_sid", "auth_token", "api_key", "api_secret"))
    given[name] = b"bytes"

    with pytest.raises(InvalidArgumentError, match=f"{name} must be a string, got bytes"):
        resolve_credentials(environ={}, **given)  # type: ignore[arg-type]


def test_the_pair_shows_only_its_username() -> None:
    pair = resolve_credentials(ACCOUNT_SID, AUTH_TOKEN, None, None, {})

    assert AUTH_TOKEN not in repr(pair)
    assert AUTH_TOKEN not in str(pair)
    assert ACCOUNT_SID in repr(pair)


def test_the_pair_cannot_be_pickled() -> None:
    pair = resolve_credentials(ACCOUNT_SID, AUTH_TOKEN, None, None, {})

    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(pair)
