"""The budget scenarios' terms: the server's token bucket, its schedule and its floor, the
targets, and what a run under the budget delivered, channel by channel."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Self

import attrs

from ._systems import System

__all__ = ["Budget", "Delivery", "Schedule", "Target", "deliver", "last_start", "refilled"]


Schedule = tuple[tuple[float, float], ...]
"""Steps of a server's rate: ``(seconds, rate)``, ``seconds`` after the first request."""


def _segments(rate: float, schedule: Schedule) -> Iterator[tuple[float, float, float]]:
    """``(start, end, rate)`` of each stretch of constant rate, from 0; the last one endless."""
    start, current = 0.0, rate
    for seconds, step_rate in schedule:
        yield start, seconds, current
        start, current = seconds, step_rate
    yield start, math.inf, current


def refilled(seconds: float, rate: float, schedule: Schedule = ()) -> float:
    """The tokens a bucket refilled at ``rate``, then at each step of ``schedule``, makes in
    its first ``seconds`` (none lost to its cap)."""
    return sum(
        max(0.0, min(end, seconds) - start) * current
        for start, end, current in _segments(rate, schedule)
    )


def last_start(requests: int, burst: int, rate: float, schedule: Schedule = ()) -> float:
    """The earliest time, from the first request, at which the last of ``requests`` can start
    through a token bucket of ``burst`` tokens, full at 0, refilled at ``rate`` a second and
    from each step of ``schedule`` at the step's rate.

    The burst goes at once; every later request takes a token as soon as one is whole, so the
    bucket never holds more than one and its cap never binds: the ``n``-th request starts when
    the refill integrated from 0 (`refilled`) reaches ``n - burst``.
    """
    needed = float(max(0, requests - burst))
    for start, end, current in _segments(rate, schedule):
        made = (end - start) * current
        if made >= needed:
            return start + needed / current
        needed -= made
    raise AssertionError("the last segment is endless")  # pragma: no cover


@attrs.frozen
class Budget:
    """A server's budget: a token bucket of ``rate`` requests/s holding ``burst`` tokens, full
    when a run starts, whose rate follows ``schedule`` from the run's first request, in front
    of ``latency`` seconds a request; and ``channels`` of one page each to fetch through it."""

    rate: float
    burst: int
    latency: float
    channels: int
    schedule: Schedule = ()

    @classmethod
    def lasting(
        cls, rate: float, burst: int, latency: float, seconds: float, schedule: Schedule = ()
    ) -> Budget:
        """The budget whose floor is at least ``seconds`` plus the latency: the fewest
        channels that keep the bucket busy that long."""
        # A hair less than the refill, so that a whole number of tokens is not rounded up.
        channels = burst + math.ceil(refilled(seconds, rate, schedule) - 1e-9)
        return cls(rate, burst, latency, channels, schedule)

    @property
    def floor(self) -> float:
        """The least time a run can take: the burst at once, then one request a token as the
        rate (and its schedule) makes them, and the last one's latency; without a schedule,
        ``(channels - burst) / rate + latency``."""
        return last_start(self.channels, self.burst, self.rate, self.schedule) + self.latency

    @property
    def refill(self) -> float:
        """Seconds of idle that fill the bucket again, with a margin, between two runs (the
        emulator's reset puts a schedule's rate back to ``rate``)."""
        return max(0.2, 2 * self.burst / self.rate)

    def describe(self) -> str:
        """The budget in a few words, for the table."""
        steps = "".join(f", {rate:g}/s from {seconds:g} s" for seconds, rate in self.schedule)
        return (
            f"{self.rate:g}/s{steps}, burst {self.burst}, {self.latency * 1000:g} ms,"
            f" {self.channels:,} channels"
        )


@attrs.frozen
class Target:
    """What a row must reach: wall at most ``ratio`` x the floor, at most ``throttled`` of its
    requests answered 429 (``None``: any share), every channel delivered, and, for several
    processes, no process's own wall more than ``spread`` above another's (``None``: not
    judged)."""

    ratio: float
    throttled: float | None
    spread: float | None = None

    def describe(self) -> str:
        """The target in a few words, for the table."""
        parts = [f"≤ {self.ratio:.2f} x floor"]
        if self.throttled is not None:
            parts.append("no 429" if self.throttled == 0 else f"≤ {self.throttled:.0%} 429s")
        if self.spread is not None:
            parts.append(f"processes within {self.spread:.0%}")
        return ", ".join([*parts, "none lost"])

    def misses(
        self, ratio: float, throttled: float, lost: int, spread: float | None = None
    ) -> list[str]:
        """What of the target a run with these figures missed; empty if none. ``spread``: the
        processes' walls, the longest over the shortest, less 1."""
        missed = []
        if not ratio <= self.ratio:  # a NaN ratio (no valid run) misses too
            missed.append("wall")
        if self.throttled is not None and not throttled <= self.throttled:
            missed.append("429s")
        if self.spread is not None and not (spread is not None and spread <= self.spread):
            missed.append("share")
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
