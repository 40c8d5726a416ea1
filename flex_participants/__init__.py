"""An asyncio client for Twilio Flex's "List all Participants for a Channel" endpoint.

async with FlexClient() as client:
    async for participant in client.participants(interaction_sid, channel_sid):
        print(participant.sid, participant.type)
"""

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from ._redis_limit import RedisLimiter, RedisLimitState

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
    "RedisLimitState",
    "RedisLimiter",
    "RetryPolicy",
    "ServerError",
    "TransportError",
    "UnsafeURLError",
    "__version__",
    "to_dict",
]


def __getattr__(name: str) -> object:
    # The Redis limiter is imported on first use, so that redis is needed only by those who use it.
    if name in ("RedisLimiter", "RedisLimitState"):
        from . import _redis_limit

        return getattr(_redis_limit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
