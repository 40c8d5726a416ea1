"""``flex-participants export``: many channels fetched concurrently, each written whole to a
journaled file, under a progress bar; then the export's report.

`export_file` is what both ``flex-participants export`` and ``flex-participants demo`` run,
on a `ChannelSource` opened by `locked_source`, which first takes the output's `OutputLock`.

The export keeps books in its `ExportReport`: every channel read from the input is written,
skipped (already in the output, or listed twice), failed (by the API or because the writer
cannot encode its data), or left without a result when the batch ended early (by an
interruption, or by a bug); `ExportReport.ok` holds only when every channel read is in the
output and the whole input was read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Protocol

import attrs

from flex_participants import ChannelResult, FlexClient, FlexError

from ._channels import STDIN, ChannelInputError, ChannelSource, file_identity
from ._journal import JournaledOutput, OutputLock, journal_path, lock_path
from ._main import CommandError, ExitCode, UsageError, client_from_args, read_secret_files
from ._render import (
    ExportProgress,
    FileFormat,
    UnwritableError,
    encode,
    file_header,
    print_report,
    stderr_console,
)

__all__ = [
    "ChannelFailure",
    "ExportObserver",
    "ExportReport",
    "export_channels",
    "export_file",
    "locked_source",
    "output_path",
    "run_export",
]

# -- the command --------------------------------------------------------------------------


def run_export(args: argparse.Namespace) -> int:
    """Export the channels of ``args.channels`` to ``args.out``; 1 if any channel was not written.

    The secret files are read, the output locked and the channel list opened before the
    event loop starts, since reading stdin or opening a FIFO waits for its writer.

    Raises:
        UsageError: bad options, an unreadable channel list or an output that is in the way.
        OutputLockedError: another export is writing the output.
        CommandError: the output cannot be written.
    """
    if args.out == STDIN:
        raise UsageError(f"--out must name a file, got {args.out!r}")
    if args.channels == STDIN and getattr(args, "stdin_closed", False):
        raise UsageError("--channels - reads stdin, which is closed")
    read_secret_files(args, stdin_taken_by="--channels -" if args.channels == STDIN else None)
    client = client_from_args(args)
    out = output_path(args.out)
    _refuse_list_that_is_the_output(args.channels, out)
    with locked_source(args.channels, out) as source:
        return asyncio.run(_export(args, client, source, out))


def output_path(name: str) -> Path:
    """The file that ``--out`` names: resolved once, so that the output, its journal and its
    lock are the same files whichever path (a symlink, another working directory) names it.
    """
    return Path(os.path.realpath(name))


def _refuse_list_that_is_the_output(channels: str, out: Path) -> None:
    """The channel list must not be the output, its journal or its lock, by any name (stdin
    redirected from one, a hard link): writing would truncate the very list being read."""
    listed = file_identity(channels)
    if listed is None:
        return  # opening it says why, in a moment
    for path in (out, journal_path(out), lock_path(out)):
        with contextlib.suppress(OSError):
            written = os.stat(path)
            if listed == (written.st_dev, written.st_ino):
                name = "stdin" if channels == STDIN else channels
                raise UsageError(f"the channel list {name} is {path}, which the export writes")


async def _export(
    args: argparse.Namespace, client: FlexClient, source: ChannelSource, out: Path
) -> int:
    report = ExportReport(out, args.format)
    console = stderr_console()
    async with client:
        try:
            with ExportProgress(console, client, page_size=args.page_size) as progress:
                await export_file(
                    client,
                    source,
                    report,
                    progress,
                    resume=args.resume,
                    force=args.force,
                    concurrency=args.concurrency,
                    page_size=args.page_size,
                )
        finally:
            # Also when interrupted or when writing failed: the channels not written are named.
            if report.started:
                print_report(console, report, "export")
    if report.input_error is not None:
        raise report.input_error
    return ExitCode.OK if report.ok else ExitCode.FAILED


# -- the export ---------------------------------------------------------------------------

Channel = tuple[str, str]


@attrs.frozen
class ChannelFailure:
    """A channel that could not be exported, and why: a `FlexError` from the API, or an
    `UnwritableError` from the writer.
    """

    interaction_sid: str
    channel_sid: str
    error: FlexError | UnwritableError


@attrs.define
class ExportReport:
    """What an export did, and the books that check it."""

    out: Path
    file_format: FileFormat
    total: int | None = None
    """Channels in the input, if it was counted first."""
    started: bool = False
    """Whether the output was opened, so that the export began."""
    read: int = 0
    """Channels read from the input, duplicates included."""
    exported: int = 0
    """Channels fetched and written by this run."""
    skipped: int = 0
    """Channels already in the output (``--resume``) or listed twice in the input."""
    participants: int = 0
    """Participants written by this run."""
    failures: list[ChannelFailure] = attrs.field(factory=list)
    unreported: list[Channel] = attrs.field(factory=list)
    """Channels given to the batch that it ended without a result for."""
    surplus: list[Channel] = attrs.field(factory=list)
    """Results the batch gave for channels not awaiting one (a bug); ignored."""
    batch_error: FlexError | None = None
    """What ended the batch before every channel had a result, if anything did."""
    input_error: ChannelInputError | None = None
    """Why reading the channel list stopped early, if it did."""
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0

    @property
    def not_written(self) -> int:
        """Channels read and not in the output: failed, or without a result."""
        return len(self.failures) + len(self.unreported)

    @property
    def unaccounted(self) -> int:
        """Channels read that the books do not place; anything but 0 is a bug."""
        return self.read - self.exported - self.skipped - self.not_written

    @property
    def ok(self) -> bool:
        """Whether the whole input was read and every channel of it is in the output."""
        return (
            self.started
            and self.input_error is None
            and self.batch_error is None
            and not self.surplus
            and self.read == self.exported + self.skipped
            and (self.total is None or self.read == self.total)
        )


class ExportObserver(Protocol):
    """Told of an export's progress (the progress bar implements it)."""

    def started(self, total: int | None) -> None:
        """The export begins; ``total`` channels, if known."""

    def skipped(self) -> None:
        """A channel was skipped: already exported, or a duplicate."""

    def finished(self, participants: int, *, failed: bool) -> None:
        """A channel was written (with ``participants``) or failed."""


def _write(output: JournaledOutput, file_format: FileFormat, result: ChannelResult) -> None:
    """Encode and commit one channel; run in a worker thread (fsync takes a while)."""
    data = encode(file_format, result.participants)
    output.commit(result.interaction_sid, result.channel_sid, data)


async def _write_to_the_end(
    output: JournaledOutput, file_format: FileFormat, result: ChannelResult
) -> None:
    """`_write` in a worker thread, awaited to its end even if this task is cancelled meanwhile.

    A commit cannot be stopped halfway: when the export is interrupted during one, this
    waits for it, so that the books know whether the channel is in the output, and then
    lets the cancellation through.
    """
    future = asyncio.ensure_future(asyncio.to_thread(_write, output, file_format, result))
    try:
        await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved: what the commit raised no longer matters
        raise


async def export_channels(
    client: FlexClient,
    channels: AsyncGenerator[Channel],
    output: JournaledOutput,
    report: ExportReport,
    observer: ExportObserver,
    *,
    concurrency: int | None = None,
    page_size: int | None = None,
) -> None:
    """Fetch every channel not yet in ``output`` and commit each one whole as it completes.

    Counts go into ``report``, however this ends (an interruption included). A channel that
    fails is recorded there and noted in the journal as failed, so that a resume retries it.
    ``client.participants_for_channels`` reads ``channels`` lazily.

    Raises:
        OSError: writing the output failed; the channels committed before stay valid.
    """
    seen = set(output.finished)
    pending: dict[Channel, None] = {}  # given to the batch, awaiting a result; in order

    async def fresh() -> AsyncGenerator[Channel]:
        async with contextlib.aclosing(channels) as source:
            async for channel in source:
                report.read += 1
                if channel in seen:
                    report.skipped += 1
                    observer.skipped()
                    continue
                seen.add(channel)
                pending[channel] = None
                yield channel

    def fail(channel: Channel, error: FlexError | UnwritableError) -> None:
        del pending[channel]
        report.failures.append(ChannelFailure(*channel, error))
        output.note_failure(*channel, type(error).__name__)
        observer.finished(0, failed=True)

    def written(channel: Channel, participants: int) -> None:
        del pending[channel]
        report.exported += 1
        report.participants += participants
        observer.finished(participants, failed=False)

    requests, retries = client.requests_sent, client.retries
    started = time.perf_counter()
    try:
        async with contextlib.aclosing(fresh()) as feed:
            batch = client.participants_for_channels(
                feed, page_size=page_size, concurrency=concurrency
            )
            async with batch:
                async for result in batch:
                    channel = (result.interaction_sid, result.channel_sid)
                    if channel not in pending:
                        report.surplus.append(channel)
                        continue
                    if result.error is not None:
                        fail(channel, result.error)
                        continue
                    try:
                        await _write_to_the_end(output, report.file_format, result)
                    except UnwritableError as exc:
                        fail(channel, exc)
                    except asyncio.CancelledError:
                        if channel in output.finished:
                            written(channel, len(result.participants))
                        raise
                    else:
                        written(channel, len(result.participants))
    except ChannelInputError as exc:  # raised once the channels under way are delivered
        report.input_error = exc
    except FlexError as exc:  # the batch ended before every channel had its result
        report.batch_error = exc
    finally:
        report.unreported = list(pending)
        _note_unreported(output, report.unreported, sys.exception() or report.batch_error)
        report.seconds += time.perf_counter() - started
        report.requests += client.requests_sent - requests
        report.retries += client.retries - retries


def _note_unreported(
    output: JournaledOutput, channels: list[Channel], ended_by: BaseException | None
) -> None:
    """Note in the journal as failed each channel the export ended without, with the name of
    what ended it (``CancelledError`` for Ctrl-C, ``OSError`` for a full disk), as it notes a
    channel that failed.

    The notes are written while there is room and the journal is whole: a note lost costs
    nothing, since a resume retries every channel not journaled as finished.
    """
    reason = type(ended_by).__name__ if ended_by is not None else "NoResult"
    for channel in channels:
        try:
            output.note_failure(*channel, reason)
        except (OSError, ValueError):
            return


@contextlib.contextmanager
def locked_source(channels: str, out: Path) -> Iterator[ChannelSource]:
    """Lock the output ``out``, then open the channel list ``channels`` (a path or ``-``).

    In that order, so that a second export of the same output stops at once, before it waits
    for its channel list (a FIFO waits for its writer) or touches any file.

    Raises:
        OutputLockedError: another export is writing ``out``.
        CommandError: the lock cannot be taken.
        UsageError: the channel list cannot be opened.
    """
    with OutputLock.acquire(out), ChannelSource.open(channels) as source:
        yield source


async def export_file(
    client: FlexClient,
    source: ChannelSource,
    report: ExportReport,
    observer: ExportObserver,
    *,
    resume: bool = False,
    force: bool = False,
    concurrency: int | None = None,
    page_size: int | None = None,
) -> None:
    """Export the channels of ``source`` to ``report.out``, counting into ``report``.

    The caller holds the output's lock (`locked_source`). A channel list that is a regular
    file is checked whole before any request, and gives the progress bar its total.

    Raises:
        UsageError: the output exists (without ``resume`` or ``force``) or cannot be resumed,
            or the channel list has a bad line (found before any request when it is a file).
        CommandError: the output cannot be written.
    """
    out = report.out
    report.total = source.count()
    header = file_header(report.file_format)
    try:
        if resume:
            output = JournaledOutput.resume(out, file_format=report.file_format, header=header)
        else:
            output = JournaledOutput.create(
                out, file_format=report.file_format, header=header, force=force
            )
    except OSError as exc:
        raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from None
    with output:
        report.started = True
        observer.started(report.total)
        try:
            await export_channels(
                client,
                source.channels(),
                output,
                report,
                observer,
                concurrency=concurrency,
                page_size=page_size,
            )
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from None
