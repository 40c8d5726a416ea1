"""The emulator's data: channels and their participants, seeded, and generated on demand.

A seeded channel stores only its size and a key; participant ``j`` is derived from the key
and ``j`` alone (a keyed BLAKE2b digest), so any page is built in time proportional to its
size, a dataset of tens of thousands of channels is built in a fraction of a second, and
nothing is cached.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from .._request import sid_problem
from ._responses import dumps, loads

__all__ = [
    "PARTICIPANT_TYPES",
    "Dataset",
    "StoredChannel",
]

PARTICIPANT_TYPES: Final = ("agent", "customer", "supervisor", "external", "unknown")
"""The five participant types the API documents."""

# Participant URLs name Twilio's origin, as the real API's do, so that the data is a function
# of the seed alone and not of the port the emulator happens to listen on.
_RESOURCE_ORIGIN: Final = "https://flex-api.twilio.com"

# One type per value of a digest byte: the weights out of 256.
_TYPE_WEIGHTS: Final = {
    "customer": 96,
    "agent": 96,
    "supervisor": 24,
    "external": 24,
    "unknown": 16,
}
_TYPE_BY_BYTE: Final = tuple(kind for kind, weight in _TYPE_WEIGHTS.items() for _ in range(weight))
assert len(_TYPE_BY_BYTE) == 256

# A quarter of the seeded channels share the interaction of the channel before them, as
# channels of one interaction do.
_SHARED_INTERACTION: Final = 0.25


def _random_sid(prefix: str, rng: random.Random) -> str:
    return f"{prefix}{rng.getrandbits(128):032x}"


def _channel_size(rng: random.Random) -> int:
    """Most channels are small, some empty, a few hold thousands."""
    r = rng.random()
    if r < 0.06:
        return 0
    if r < 0.80:
        return rng.randint(1, 8)
    if r < 0.95:
        return rng.randint(9, 120)
    if r < 0.99:
        return rng.randint(121, 1000)
    return rng.randint(1001, 4000)


class StoredChannel:
    """One channel: its SIDs and either a generator key and size, or participants as given."""

    __slots__ = (
        "_given",
        "_key",
        "_size",
        "_url_prefix",
        "channel_sid",
        "index",
        "interaction_sid",
    )

    def __init__(
        self,
        interaction_sid: str,
        channel_sid: str,
        index: int,
        *,
        key: bytes = b"",
        size: int = 0,
        given: list[dict[str, Any]] | None = None,
    ) -> None:
        self.interaction_sid = interaction_sid
        self.channel_sid = channel_sid
        self.index = index
        self._key = key
        self._given = given
        self._size = size if given is None else len(given)
        self._url_prefix = (
            f"{_RESOURCE_ORIGIN}/v1/Interactions/{interaction_sid}"
            f"/Channels/{channel_sid}/Participants/"
        )

    @property
    def size(self) -> int:
        """How many participants the channel has."""
        return self._size

    def page(self, start: int, stop: int) -> list[dict[str, Any]]:
        """Participants ``start`` to ``stop`` (excluded), as the server serves them.

        Participants given by the user are returned as stored; do not mutate them.
        """
        if self._given is not None:
            return self._given[start:stop]
        return [self._generated(j) for j in range(start, min(stop, self._size))]

    def participants(self) -> list[dict[str, Any]]:
        """Every participant, as fresh objects the caller may keep or change."""
        if self._given is not None:
            return [loads(dumps(participant)) for participant in self._given]
        return self.page(0, self._size)

    def _generated(self, j: int) -> dict[str, Any]:
        digest = hashlib.blake2b(j.to_bytes(8, "big"), key=self._key, digest_size=64).digest()
        kind = _TYPE_BY_BYTE[digest[0]]
        # The channel's index and the participant's make the SID unique within the emulator.
        sid = f"UT{digest[1:9].hex()}{self.index:08x}{j:08x}"
        routing: dict[str, str] | None = None
        if kind == "agent":
            routing = {
                "task_sid": f"WT{digest[9:25].hex()}",
                "worker_sid": f"WK{digest[25:41].hex()}",
                "reservation_sid": f"WR{digest[41:57].hex()}",
            }
        return {
            "sid": sid,
            "url": self._url_prefix + sid,
            "type": kind,
            "channel_sid": self.channel_sid,
            "interaction_sid": self.interaction_sid,
            "routing_properties": routing,
        }


def _copy_participants(participants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(participants, str | bytes | bytearray):
        raise TypeError("participants must be an int or a sequence of participant mappings")
    copies: list[dict[str, Any]] = []
    for n, participant in enumerate(participants):
        if not isinstance(participant, Mapping):
            raise TypeError(f"participant {n} must be a mapping, got {type(participant).__name__}")
        try:
            # A deep copy, in the form the server sends: later changes by the caller do not leak.
            copy = loads(dumps(dict(participant)))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"participant {n} is not JSON-serialisable: {exc}") from None
        copies.append(copy)
    return copies


class Dataset:
    """The channels an emulator serves, keyed by ``(interaction_sid, channel_sid)``."""

    def __init__(self, seed: int, channels: int) -> None:
        self.seed = seed
        self._channels: dict[tuple[str, str], StoredChannel] = {}
        for channel in self._seeded(channels):
            self._channels[channel.interaction_sid, channel.channel_sid] = channel
        # SIDs and keys of channels added later come from a stream of their own, so that
        # they do not depend on how many channels were seeded.
        self._rng = random.Random(f"flex-emulator/{seed}/added")  # noqa: S311 - test data

    def _seeded(self, count: int) -> Iterator[StoredChannel]:
        rng = random.Random(self.seed)  # noqa: S311 - reproducible test data, not secrets
        interaction_sid = ""
        seen: set[str] = set()
        for index in range(count):
            if not interaction_sid or rng.random() >= _SHARED_INTERACTION:
                interaction_sid = _random_sid("KD", rng)
            channel_sid = _random_sid("UO", rng)
            while channel_sid in seen:  # pragma: no cover - 128 random bits
                channel_sid = _random_sid("UO", rng)
            seen.add(channel_sid)
            size = _channel_size(rng)
            key = rng.getrandbits(128).to_bytes(16, "big")
            yield StoredChannel(interaction_sid, channel_sid, index, key=key, size=size)

    def __len__(self) -> int:
        return len(self._channels)

    def keys(self) -> list[tuple[str, str]]:
        """Every ``(interaction_sid, channel_sid)``, in insertion order."""
        return list(self._channels)

    def get(self, interaction_sid: str, channel_sid: str) -> StoredChannel | None:
        """The channel, or ``None`` if there is none with these SIDs."""
        return self._channels.get((interaction_sid, channel_sid))

    def add(
        self,
        interaction_sid: str | None,
        channel_sid: str | None,
        participants: int | Sequence[Mapping[str, Any]],
    ) -> tuple[str, str]:
        """Add a channel; see `FlexEmulator.add_channel`."""
        if interaction_sid is None:
            interaction_sid = _random_sid("KD", self._rng)
        elif problem := sid_problem("interaction_sid", interaction_sid, "KD"):
            raise ValueError(problem)
        if channel_sid is None:
            channel_sid = _random_sid("UO", self._rng)
            while (interaction_sid, channel_sid) in self._channels:  # pragma: no cover
                channel_sid = _random_sid("UO", self._rng)
        elif problem := sid_problem("channel_sid", channel_sid, "UO"):
            raise ValueError(problem)
        if (interaction_sid, channel_sid) in self._channels:
            raise ValueError(f"channel {interaction_sid}/{channel_sid} already exists")
        index = len(self._channels)
        if isinstance(participants, int) and not isinstance(participants, bool):
            if participants < 0:
                raise ValueError(f"participants must be >= 0, got {participants}")
            key = self._rng.getrandbits(128).to_bytes(16, "big")
            channel = StoredChannel(interaction_sid, channel_sid, index, key=key, size=participants)
        elif isinstance(participants, Sequence):
            channel = StoredChannel(
                interaction_sid, channel_sid, index, given=_copy_participants(participants)
            )
        else:
            raise TypeError(
                "participants must be an int or a sequence of participant mappings, "
                f"got {type(participants).__name__}"
            )
        self._channels[interaction_sid, channel_sid] = channel
        return interaction_sid, channel_sid
