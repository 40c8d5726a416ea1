"""An asyncio client for Twilio Flex's "List all Participants for a Channel" endpoint.

async with FlexClient() as client:
    async for participant in client.participants(interaction_sid, channel_sid):
        print(participant.sid, participant.type)
"""

from ._batch import ChannelBatch
from ._client import FlexClient
from ._convert import to_dict
from ._errors import (
    AuthenticationError,
    FlexAPIError,
    FlexError,
    InvalidArgumentError,
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
    UnsafeURLError,
)
from ._limit import AdaptiveLimiter, Limiter
from ._models import ChannelResult, PageMeta, Participant, ParticipantPage, ParticipantType
from ._retry import RetryPolicy
from ._stream import ParticipantStream

__version__ = "0.1.0"

__all__ = [
    "AdaptiveLimiter",
    "AuthenticationError",
    "ChannelBatch",
    "ChannelResult",
    "FlexAPIError",
    "FlexClient",
    "FlexError",
    "InvalidArgumentError",
    "InvalidResponseError",
    "Limiter",
    "NotFoundError",
    "PageMeta",
    "Participant",
    "ParticipantPage",
    "ParticipantStream",
    "ParticipantType",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "TransportError",
    "UnsafeURLError",
    "__version__",
    "to_dict",
]
