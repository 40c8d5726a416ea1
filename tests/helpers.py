"""Builders of API bodies and URLs shared by the tests."""

from __future__ import annotations

from typing import Any, TypedDict

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
