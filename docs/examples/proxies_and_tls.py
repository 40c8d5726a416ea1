"""A client behind a corporate proxy that inspects TLS, and one that reads HTTPS_PROXY."""

from __future__ import annotations

import os
import ssl

from flex_participants import FlexClient


def corporate_client() -> FlexClient:
    """Through the proxy in CORPORATE_PROXY, trusting the CA its TLS inspection signs with."""
    # The system's CAs, and the corporate one (a PEM bundle) on top of them.
    context = ssl.create_default_context(cafile=os.environ["CORPORATE_CA_BUNDLE"])
    # http://user:password@proxy.internal:3128: the credentials go to the proxy only.
    return FlexClient(proxy=os.environ["CORPORATE_PROXY"], ssl=context)


def client_from_the_environment() -> FlexClient:
    """Through the proxy HTTPS_PROXY names, unless NO_PROXY lists Twilio's host."""
    return FlexClient(trust_env=True)


async def count_participants(client: FlexClient, interaction_sid: str, channel_sid: str) -> int:
    """How many participants the channel has, fetched through ``client``."""
    async with client:
        return len(await client.participants(interaction_sid, channel_sid).collect())
