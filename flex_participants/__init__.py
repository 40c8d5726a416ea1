"""An asyncio client for Twilio Flex's "List all Participants for a Channel" endpoint.

Example::

    async with FlexClient() as client:
        async for participant in client.participants(interaction_sid, channel_sid):
            print(participant.sid, participant.type)
"""

import logging

from ._batch import ChannelBatch
from ._channel_list import (
    ChannelListError,
    ChannelListParser,
    read_channel_list,
    write_channel_list,
)
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

__all__ = [
    "AdaptiveLimiter",
    "AuthenticationError",
    "ChannelBatch",
    "ChannelListError",
    "ChannelListParser",
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
    "read_channel_list",
    "to_dict",
    "write_channel_list",
]

# The logging HOWTO's advice for a library: nothing is printed unless the application
# configures logging (not even warnings, through logging's last resort).
logging.getLogger("flex_participants").addHandler(logging.NullHandler())
