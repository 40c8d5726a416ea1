"""The export loop: many channels fetched concurrently, each written whole to a journaled file.

`export_file` is what both ``flex-participants export`` and ``flex-participants demo`` run:
it opens the `JournaledOutput`, counts the channel list when it is a file, and drives
`export_channels` under a progress display.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Protocol

import attrs

from flex_participants import FlexClient, FlexError

from ._channels import ChannelInputError, count_channels, read_channels
from ._errors import CommandError
from ._formats import FileFormat, encode, file_header
from ._journal import JournaledOutput

__all__ = ["ChannelFailure", "ExportObserver", "ExportReport", "export_channels", "export_file"]


@attrs.frozen
class ChannelFailure:
    """A channel that could not be fetched, and why."""

    interaction_sid: str
    channel_sid: str
    error: FlexError


@attrs.define
class ExportReport:
    """What an export did."""

    out: Path
    file_format: FileFormat
    total: int | None = None
    """Channels in the input, if it was counted first."""
    exported: int = 0
    """Channels fetched and written by this run."""
    skipped: int = 0
    """Channels already in the output (``--resume``) or listed twice in the input."""
    participants: int = 0
    """Participants written by this run."""
    failures: list[ChannelFailure] = attrs.field(factory=list)
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    input_error: ChannelInputError | None = None
    """Why reading the channel list stopped early, if it did."""

    @property
    def ok(self) -> bool:
        """Whether every channel of the input was exported."""
        return not self.failures and self.input_error is None


class ExportObserver(Protocol):
    """Told of an export's progress (the progress bar implements it)."""

    def started(self, total: int | None) -> None:
        """The export begins; ``total`` channels, if known."""

    def skipped(self) -> None:
        """A channel was skipped: already exported, or a duplicate."""

    def finished(self, participants: int, *, failed: bool) -> None:
        """A channel was written (with ``participants``) or failed."""


async def export_channels(
    client: FlexClient,
    channels: AsyncGenerator[tuple[str, str]],
    output: JournaledOutput,
    file_format: FileFormat,
    report: ExportReport,
    observer: ExportObserver,
    *,
    concurrency: int | None = None,
    page_size: int | None = None,
) -> None:
    """Fetch every channel not yet in ``output`` and commit each one whole as it completes.

    Counts go into ``report``. A channel that fails is recorded there and not journaled, so
    that a resume retries it. ``client.participants_for_channels`` reads ``channels`` lazily.

    Raises:
        OSError: writing the output failed; the channels committed before stay valid.
    """
    seen = set(output.finished)

    async def pending() -> AsyncIterator[tuple[str, str]]:
        async with contextlib.aclosing(channels) as source:
            async for channel in source:
                if channel in seen:
                    report.skipped += 1
                    observer.skipped()
                    continue
                seen.add(channel)
                yield channel

    requests, retries = client.requests_sent, client.retries
    started = time.perf_counter()
    try:
        batch = client.participants_for_channels(
            pending(), page_size=page_size, concurrency=concurrency
        )
        async with batch:
            async for result in batch:
                if result.error is not None:
                    report.failures.append(
                        ChannelFailure(result.interaction_sid, result.channel_sid, result.error)
                    )
                    observer.finished(0, failed=True)
                    continue
                data = encode(file_format, result.participants).encode()
                # Off the loop: fsync may take a while, and requests go on meanwhile.
                await asyncio.to_thread(
                    output.commit, result.interaction_sid, result.channel_sid, data
                )
                report.exported += 1
                report.participants += len(result.participants)
                observer.finished(len(result.participants), failed=False)
    except ChannelInputError as exc:  # raised once the channels under way are delivered
        report.input_error = exc
    finally:
        report.seconds += time.perf_counter() - started
        report.requests += client.requests_sent - requests
        report.retries += client.retries - retries


async def export_file(
    client: FlexClient,
    channels: str,
    out: Path,
    *,
    file_format: FileFormat,
    observer: ExportObserver,
    resume: bool = False,
    force: bool = False,
    concurrency: int | None = None,
    page_size: int | None = None,
) -> ExportReport:
    """Export the channels listed in ``channels`` (a path or ``-``) to ``out``.

    Raises:
        UsageError: the output exists (without ``resume`` or ``force``) or cannot be resumed,
            or the channel list cannot be read or has a bad line (found before any request
            when it is a file).
        CommandError: the output cannot be written.
    """
    total = count_channels(channels)
    header = file_header(file_format).encode()
    report = ExportReport(out, file_format, total)
    try:
        if resume:
            output = JournaledOutput.resume(out, file_format=file_format, header=header)
        else:
            output = JournaledOutput.create(
                out, file_format=file_format, header=header, force=force
            )
    except OSError as exc:
        raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from None
    with output:
        observer.started(total)
        try:
            await export_channels(
                client,
                read_channels(channels),
                output,
                file_format,
                report,
                observer,
                concurrency=concurrency,
                page_size=page_size,
            )
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from None
    return report
