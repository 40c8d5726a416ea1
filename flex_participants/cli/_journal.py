"""The output of an export on disk: one export at a time holds its lock, and its journal says
which channels it holds whole.

`OutputLock`: one export per output file, held with an OS file lock on ``OUT.lock``.

Two exports writing the same output would truncate and interleave each other's rows and
journal lines. So an export first takes an exclusive ``flock`` on a lock file next to the
output, without waiting: a second export finds it held and stops before it touches anything.
The operating system releases the lock when the process ends, however it ends (even by
SIGKILL), so a crashed export never blocks the next one. The lock file holds the pid of its
holder, to name it; it is removed when the export ends, and left (unlocked, harmless) by a
crash.

`JournaledOutput`: an export file that a crash never leaves with a half-written channel.

Each finished channel's rows go to the output in one write, flushed to disk (``fsync``);
only then is a line ``interaction_sid,channel_sid,end_offset`` appended to the journal,
``OUT.journal``, and flushed to disk too. So the journal names exactly the channels whose
rows are on disk, and its last offset is where the last complete channel ends. Resuming
truncates the output to that offset, which drops whatever a crash left after it, and skips
the channels the journal names.

The journal's first line records the file format and where the first channel starts (after
the CSV header), so that a resume in another format is refused. A channel that failed is
noted on a line of its own, starting with ``#``, for whoever reads the journal; a resume
retries it::

    # flex-participants journal v1 format=csv start=56
    KD...,UO...,1234
    # failed ["KD...","UO..."] NotFoundError
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from ._main import CommandError, OutputLockedError, UsageError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX (Windows)
    _HAVE_FLOCK = False
else:
    _HAVE_FLOCK = True

__all__ = [
    "JOURNAL_SUFFIX",
    "LOCK_SUFFIX",
    "JournaledOutput",
    "OutputLock",
    "journal_path",
    "lock_path",
]

# -- the lock -----------------------------------------------------------------------------

LOCK_SUFFIX: Final = ".lock"


def lock_path(out: Path) -> Path:
    """The lock file of the output ``out``: next to the file itself, whatever path names it."""
    real = Path(os.path.realpath(out))
    return real.with_name(real.name + LOCK_SUFFIX)


class OutputLock:
    """An exclusive lock on an export's output; see the module docstring.

    Take it with `acquire` and release it with `release` (``with`` releases it).
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, out: Path) -> Self:
        """Lock the output ``out`` for this process, or fail at once.

        Raises:
            OutputLockedError: another process holds the lock.
            CommandError: the lock file cannot be made, or this system has no ``flock``.
        """
        if not _HAVE_FLOCK:  # pragma: no cover - not POSIX
            raise CommandError(
                "export needs POSIX file locks (fcntl.flock), which this system lacks"
            )
        path = lock_path(out)
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                raise CommandError(f"cannot create the lock file {path}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise OutputLockedError(
                    f"another export{holder} is writing {out}: it holds {path}; nothing was "
                    "touched (run again once it has ended)"
                ) from None
            except OSError as exc:
                os.close(fd)
                raise CommandError(f"cannot lock {path}: {exc.strerror}") from None
            # A holder that just ended removed the file it had locked, which this process may
            # have opened before: that lock guards nothing, so lock the file now there.
            if _same_file(fd, path):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(path, fd)

    def release(self) -> None:
        """Remove the lock file and release the lock. Idempotent."""
        if self._fd < 0:
            return
        # Removed while still locked, so that no other process can lock it in between.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _holder(fd: int) -> str:
    """`` (pid N)`` from the lock file, or nothing if it does not say."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {text})" if text.isdigit() else ""


# -- the journal --------------------------------------------------------------------------

JOURNAL_SUFFIX: Final = ".journal"
_HEADER = re.compile(rb"# flex-participants journal v1 format=(?P<format>\w+) start=(?P<start>\d+)")


def journal_path(out: Path) -> Path:
    """The journal that goes with the output file ``out``."""
    return out.with_name(out.name + JOURNAL_SUFFIX)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


@contextlib.contextmanager
def _closed_on_error(fd: int) -> Iterator[None]:
    """Close ``fd`` if the block fails: the object that would own it is never made."""
    try:
        yield
    except BaseException:
        os.close(fd)
        raise


def _cut(fd: int, size: int) -> None:
    """Truncate the file of ``fd`` to ``size`` bytes, durably, and write on from there."""
    os.ftruncate(fd, size)
    os.fsync(fd)
    os.lseek(fd, size, os.SEEK_SET)


def _sync_directory(path: Path) -> None:
    """Make the creation of a file in ``path`` durable; a no-op where directories can't be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Journal:
    """What a journal on disk says: the format, the finished channels and where they end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.format: str | None = None
        self.start = 0
        self.end = 0
        self.finished: set[tuple[str, str]] = set()
        self.complete_bytes = 0
        """The length of the journal's complete lines; a torn last line lies beyond it."""
        data = path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        self.complete_bytes = len(complete)
        lines = complete.splitlines()
        if not lines:
            return
        header = _HEADER.fullmatch(lines[0])
        if header is None:
            raise UsageError(f"{path} is not a flex-participants journal; cannot resume")
        self.format = header["format"].decode()
        self.start = self.end = int(header["start"])
        for number, line in enumerate(lines[1:], start=2):
            if line.startswith(b"#"):  # a note, such as a failed channel
                continue
            parts = line.decode("utf-8", "replace").split(",")
            if len(parts) != 3 or not parts[2].isdigit() or int(parts[2]) < self.end:
                raise UsageError(f"{path} line {number} is corrupt: {line[:80]!r}; cannot resume")
            self.finished.add((parts[0], parts[1]))
            self.end = int(parts[2])


class JournaledOutput:
    """An export's output file and its journal; see the module docstring.

    Open it with `create` or `resume`, write each finished channel with `commit`, and close
    it (``with`` closes it). `finished` holds the channels already in the file.
    """

    def __init__(
        self, path: Path, out_fd: int, journal_fd: int, end: int, finished: set[tuple[str, str]]
    ) -> None:
        self.path = path
        self._out_fd = out_fd
        self._journal_fd = journal_fd
        self._end = end
        # Held by `commit` (run in a worker thread) and `close`, so that the files are never
        # closed under a commit, whose fd numbers could otherwise be reused by another file.
        self._lock = threading.Lock()
        self.finished = finished
        """The ``(interaction_sid, channel_sid)`` of every channel whose rows are in the file."""

    @classmethod
    def create(cls, path: Path, *, file_format: str, header: bytes, force: bool) -> Self:
        """Start a new output file ``path`` (with ``header``) and its journal.

        Raises:
            UsageError: the file or its journal exists and ``force`` is false.
            OSError: the files cannot be written.
        """
        journal = journal_path(path)
        if not force:
            for existing in (path, journal):
                if existing.exists():
                    raise UsageError(
                        f"{existing} already exists: pass --resume to continue that export, "
                        "or --force to start over"
                    )
        return cls._start(path, file_format=file_format, header=header)

    @classmethod
    def resume(cls, path: Path, *, file_format: str, header: bytes) -> Self:
        """Continue the export in ``path``: drop what follows the last finished channel.

        With neither the file nor its journal on disk, this starts a new file.

        Raises:
            UsageError: the journal is missing, corrupt, of another format, or says more than
                the file holds.
            OSError: the files cannot be read or written.
        """
        journal_file = journal_path(path)
        if not journal_file.exists():
            if path.exists():
                raise UsageError(
                    f"{path} has no journal {journal_file.name}, so it cannot be resumed; "
                    "pass --force to start over"
                )
            return cls._start(path, file_format=file_format, header=header)
        journal = _Journal(journal_file)
        if journal.format is None:  # the first run ended before its journal was written
            return cls._start(path, file_format=file_format, header=header)
        if journal.format != file_format:
            raise UsageError(
                f"{path} was exported as {journal.format}; resume it with --format {journal.format}"
            )
        size = path.stat().st_size if path.exists() else 0
        if size < journal.end:
            raise UsageError(
                f"{path} holds {size} bytes but its journal says {journal.end}; cannot resume"
            )
        out_fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
        with _closed_on_error(out_fd):
            _cut(out_fd, journal.end)
            journal_fd = os.open(journal_file, os.O_WRONLY)
            with _closed_on_error(journal_fd):
                _cut(journal_fd, journal.complete_bytes)
        return cls(path, out_fd, journal_fd, journal.end, journal.finished)

    @classmethod
    def _start(cls, path: Path, *, file_format: str, header: bytes) -> Self:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        out_fd = os.open(path, flags, 0o666)
        with _closed_on_error(out_fd):
            _write_all(out_fd, header)
            os.fsync(out_fd)
            journal_fd = os.open(journal_path(path), flags, 0o666)
            with _closed_on_error(journal_fd):
                line = f"# flex-participants journal v1 format={file_format} start={len(header)}\n"
                _write_all(journal_fd, line.encode())
                os.fsync(journal_fd)
        _sync_directory(path.parent)
        return cls(path, out_fd, journal_fd, len(header), set())

    def commit(self, interaction_sid: str, channel_sid: str, data: bytes) -> None:
        """Append one finished channel's rows, then journal it; both reach the disk first.

        Raises:
            OSError: the write failed; the channel is not journaled, and this output must not
                be written to again (a resume drops whatever part of ``data`` was written).
            ValueError: the output is closed.
        """
        with self._lock:
            if self._out_fd < 0:
                raise ValueError("commit to a closed JournaledOutput")
            if data:
                _write_all(self._out_fd, data)
                os.fsync(self._out_fd)
            self._end += len(data)
            line = f"{interaction_sid},{channel_sid},{self._end}\n"
            _write_all(self._journal_fd, line.encode())
            os.fsync(self._journal_fd)
            self.finished.add((interaction_sid, channel_sid))

    def note_failure(self, interaction_sid: str, channel_sid: str, error: BaseException) -> None:
        """Note in the journal that a channel failed, and with what error.

        Not flushed to disk on its own: a note lost in a crash costs nothing, since a resume
        retries every channel not journaled as finished.

        Raises:
            OSError: the write failed.
            ValueError: the output is closed.
        """
        # JSON, so that SIDs from the input, whatever they hold, stay on this one line.
        sids = json.dumps([interaction_sid, channel_sid])
        line = f"# failed {sids} {type(error).__name__}\n"
        with self._lock:
            if self._journal_fd < 0:
                raise ValueError("note to a closed JournaledOutput")
            _write_all(self._journal_fd, line.encode())

    def close(self) -> None:
        """Close both files, once a commit under way has ended. Idempotent."""
        with self._lock:
            for fd in (self._out_fd, self._journal_fd):
                if fd >= 0:
                    os.close(fd)
            self._out_fd = self._journal_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
