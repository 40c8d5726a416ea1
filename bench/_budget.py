"""The budget scenario's terms: the server's token bucket and its floor, the targets, and what
a run under the budget delivered, channel by channel."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self

import attrs

from ._systems import System

__all__ = ["Budget", "Delivery", "Target", "deliver"]


@attrs.frozen
class Budget:
    """A server's budget: a token bucket of ``rate`` requests/s holding ``burst`` tokens, full
    when a run starts, in front of ``latency`` seconds a request; and ``channels`` of one page
    each to fetch through it."""

    rate: float
    burst: int
    latency: float
    channels: int

    @property
    def floor(self) -> float:
        """The least time a run can take: the burst at once, then one request a token, and
        the last one's latency: ``(channels - burst) / rate + latency``."""
        return max(0, self.channels - self.burst) / self.rate + self.latency

    @property
    def refill(self) -> float:
        """Seconds of idle that fill the bucket again, with a margin, between two runs."""
        return max(0.2, 2 * self.burst / self.rate)

    def describe(self) -> str:
        """The budget in a few words, for the table."""
        return (
            f"{self.rate:g}/s, burst {self.burst}, {self.latency * 1000:g} ms,"
            f" {self.channels:,} channels"
        )


@attrs.frozen
class Target:
    """What a row must reach: wall at most ``ratio`` x the floor, at most ``throttled`` of its
    requests answered 429, and every channel delivered."""

    ratio: float
    throttled: float

    def describe(self) -> str:
        """The target in a few words, for the table."""
        share = "no 429" if self.throttled == 0 else f"≤ {self.throttled:.0%} 429s"
        return f"≤ {self.ratio:.2f} x floor, {share}, none lost"

    def misses(self, ratio: float, throttled: float, lost: int) -> list[str]:
        """What of the target a run with these figures missed; empty if none."""
        missed = []
        if not ratio <= self.ratio:  # a NaN ratio (no valid run) misses too
            missed.append("wall")
        if not throttled <= self.throttled:
            missed.append("429s")
        if lost:
            missed.append("channels lost")
        return missed


@attrs.define
class Delivery:
    """What a system delivered: each channel's participant SIDs, or the error it failed with,
    and the channels it delivered more than once."""

    participants: dict[str, list[str | None]] = attrs.Factory(dict)
    errors: dict[str, str] = attrs.Factory(dict)
    repeated: list[str] = attrs.Factory(list)

    def sink(self, channel_sid: str, participants: list[str | None]) -> None:
        """A channel delivered (a `BatchSink`)."""
        if channel_sid in self.participants:
            self.repeated.append(channel_sid)
        self.participants[channel_sid] = participants

    def failed(self, channel_sid: str, error: BaseException) -> None:
        """A channel failed (a `FailSink`)."""
        self.errors[channel_sid] = f"{type(error).__name__}: {error}"[:300]

    def merge(self, other: Delivery) -> None:
        """Add ``other``'s channels, as if this system had delivered them."""
        for channel_sid, participants in other.participants.items():
            self.sink(channel_sid, participants)
        self.errors.update(other.errors)
        self.repeated.extend(other.repeated)

    def lost(self, expected: Mapping[str, Sequence[str]]) -> tuple[list[str], list[str]]:
        """The channels of ``expected`` (channel SID -> SIDs) lost: failed, never delivered,
        delivered twice or with other participants; and, of those, the ones lost without an
        error to tell of it."""
        lost: list[str] = []
        silent: list[str] = []
        for channel_sid, sids in expected.items():
            got = self.participants.get(channel_sid)
            if channel_sid in self.errors and channel_sid not in self.repeated:
                lost.append(channel_sid)
            elif (
                channel_sid in self.repeated or got is None or sorted(map(str, got)) != sorted(sids)
            ):
                lost.append(channel_sid)
                silent.append(channel_sid)
        return lost, silent

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: how a worker process hands its delivery back."""
        return {"participants": self.participants, "errors": self.errors, "repeated": self.repeated}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The inverse of `as_dict`."""
        return cls(dict(data["participants"]), dict(data["errors"]), list(data["repeated"]))


async def deliver(
    system: System, channels: Iterable[tuple[str, str]], page_size: int, delivery: Delivery
) -> None:
    """Fetch ``channels`` with ``system``'s batch into ``delivery``: a channel's failure is
    recorded there, not raised."""
    await system.batch(channels, page_size, delivery.sink, delivery.failed)
