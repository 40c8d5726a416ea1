"""An asyncio client for Twilio Flex's "List all Participants for a Channel" endpoint.

Example::

    async with FlexClient() as client:
        async for participant in client.participants(interaction_sid, channel_sid):
            print(participant.sid, participant.type)
"""

import importlib.util
import logging
from typing import TYPE_CHECKING

from ._batch import ChannelBatch
from ._client import FlexClient
from ._convert import to_dict
from ._errors import (
    AuthenticationError,
    ClientClosedError,
    DeadlineExceededError,
    FlexAPIError,
    FlexError,
    InvalidArgumentError,
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
    TransportError,
    UnsafeURLError,
)
from ._events import (
    ClientStats,
    Event,
    LimitChanged,
    PageDelivered,
    RequestFailed,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
    StreamClosed,
    StreamOpened,
)
from ._limit import AdaptiveLimiter, Limiter, Throttle
from ._models import ChannelResult, PageMeta, Participant, ParticipantPage, ParticipantType
from ._request import FlexHostWarning
from ._retry import RetryPolicy
from ._stream import ParticipantStream
from ._version import __version__

if TYPE_CHECKING:
    from ._redis_limit import RedisLimiter as RedisLimiter
    from ._redis_limit import RedisLimitState as RedisLimitState


__all__ = [
    "AdaptiveLimiter",
    "AuthenticationError",
    "ChannelBatch",
    "ChannelResult",
    "ClientClosedError",
    "ClientStats",
    "DeadlineExceededError",
    "Event",
    "FlexAPIError",
    "FlexClient",
    "FlexError",
    "FlexHostWarning",
    "InvalidArgumentError",
    "InvalidResponseError",
    "LimitChanged",
    "Limiter",
    "NotFoundError",
    "PageDelivered",
    "PageMeta",
    "Participant",
    "ParticipantPage",
    "ParticipantStream",
    "ParticipantType",
    "RateLimitError",
    "RequestFailed",
    "RequestSent",
    "ResponseReceived",
    "ResponseTooLargeError",
    "RetryPolicy",
    "RetryScheduled",
    "ServerError",
    "StreamClosed",
    "StreamOpened",
    "Throttle",
    "TransportError",
    "UnsafeURLError",
    "__version__",
    "to_dict",
]

# The logging HOWTO's advice for a library: nothing is printed unless the application
# configures logging (not even warnings, through logging's last resort).
logging.getLogger("flex_participants").addHandler(logging.NullHandler())

_REDIS_NAMES = ("RedisLimiter", "RedisLimitState")
if importlib.util.find_spec("redis") is not None:
    # Listed only where they can be imported, so that `from flex_participants import *`
    # works without the redis extra too.
    __all__ += _REDIS_NAMES


def __getattr__(name: str) -> object:
    # The Redis limiter is imported on first use, so that redis is needed only by those who use it.
    if name in _REDIS_NAMES:
        from . import _redis_limit

        return getattr(_redis_limit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
