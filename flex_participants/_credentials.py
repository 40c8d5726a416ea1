"""The credentials a client sends: where they come from, and how they are kept out of sight.

They come from the arguments, else the environment (``TWILIO_ACCOUNT_SID`` and
``TWILIO_AUTH_TOKEN``, or an API key and its secret), and become one ``Authorization`` header
value. Nothing else of them is kept: no repr, str, log line or pickle shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from ._errors import InvalidArgumentError

__all__ = ["Credentials", "resolve_credentials"]


class Credentials:
    """The Basic-auth pair, kept out of every repr, str and log line."""

    __slots__ = ("_header", "username")

    def __init__(self, username: str, password: str) -> None:
        try:
            self._header = aiohttp.encode_basic_auth(username, password)
        except (ValueError, UnicodeError) as exc:
            raise InvalidArgumentError(f"unusable credentials: {exc}") from None
        self.username = username

    def header(self) -> str:
        """The ``Authorization`` header's value."""
        return self._header

    def __repr__(self) -> str:
        return f"<credentials for {self.username!r}>"

    def __reduce__(self) -> Any:
        raise TypeError("credentials cannot be pickled")


def resolve_credentials(
    account_sid: str | None,
    auth_token: str | None,
    api_key: str | None,
    api_secret: str | None,
    environ: Mapping[str, str],
) -> Credentials:
    """The Basic-auth pair of the arguments, or of ``environ`` for those not given.

    Raises:
        InvalidArgumentError: a value is not a string, an API key comes without its secret (or
            the other way round), or no pair is given at all.
    """
    account_sid = account_sid or environ.get("TWILIO_ACCOUNT_SID") or None
    auth_token = auth_token or environ.get("TWILIO_AUTH_TOKEN") or None
    api_key = api_key or environ.get("TWILIO_API_KEY") or None
    api_secret = api_secret or environ.get("TWILIO_API_SECRET") or None
    for name, value in (
        ("account_sid", account_sid),
        ("auth_token", auth_token),
        ("api_key", api_key),
        ("api_secret", api_secret),
    ):
        if value is not None and not isinstance(value, str):
            raise InvalidArgumentError(f"{name} must be a string, got {type(value).__name__}")
    # As in the official SDK: an API key and its secret, when given, are the Basic-auth pair.
    if api_key or api_secret:
        if not (api_key and api_secret):
            missing = (
                "api_secret (or TWILIO_API_SECRET)" if api_key else "api_key (or TWILIO_API_KEY)"
            )
            raise InvalidArgumentError(
                f"an API key needs its secret and vice versa: {missing} is missing"
            )
        return Credentials(api_key, api_secret)
    if account_sid and auth_token:
        return Credentials(account_sid, auth_token)
    raise InvalidArgumentError(
        "no usable credentials: pass account_sid and auth_token (or api_key and api_secret), "
        "or set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET)"
    )
