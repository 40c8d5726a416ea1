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

The output, its journal and its lock are regular files, opened without following a symbolic
link (``O_NOFOLLOW``) and without waiting (``O_NONBLOCK``, so that a FIFO cannot hang the
export while it holds the lock); anything else at one of those paths is a `UsageError` naming
it, raised before any request (`open_regular`).

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

The files are written in an order that leaves, at every instant, a pair that a resume
accepts: a new export empties (or creates) the journal first, so that an output without a
journal, or a journal that says more than its output holds, never exists. A journal without
its first line is a run that ended before it began, and a resume starts over.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
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
    "OS_FILES",
    "FileOperations",
    "JournaledOutput",
    "OutputLock",
    "journal_path",
    "lock_path",
    "open_regular",
]

# -- the files ----------------------------------------------------------------------------


class FileOperations:
    """The operations that change an export's files on disk, a method each: the operating
    system's. Every step of writing the output, its journal and its lock goes through one, so
    that a test can stop the export at each step in turn and check what is left on disk.
    """

    def open(self, path: Path, flags: int) -> int:
        """`os.open` ``path`` with ``flags`` (mode 0o666, less the umask)."""
        return os.open(path, flags, 0o666)

    def write(self, fd: int, data: memoryview) -> int:
        """`os.write`: some of ``data``; how much."""
        return os.write(fd, data)

    def truncate(self, fd: int, size: int) -> None:
        """`os.ftruncate`."""
        os.ftruncate(fd, size)

    def fsync(self, fd: int) -> None:
        """`os.fsync`."""
        os.fsync(fd)


OS_FILES: Final = FileOperations()

# Never through a symbolic link, and never waiting for the other end of a FIFO.
_SAFE_OPEN: Final = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What opening a path that is no regular file may fail with, O_NOFOLLOW and O_NONBLOCK given:
# a symbolic link, a FIFO without a reader or a socket, a directory.
_NOT_REGULAR_ERRNOS: Final = frozenset({errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.EOPNOTSUPP})


def _kind(status: os.stat_result) -> str:
    mode = status.st_mode
    for test, kind in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    ):
        if test(mode):
            return kind
    if stat.S_ISREG(mode):
        return f"a file with {status.st_nlink - 1} other hard link(s), which would change too"
    return "not a regular file"


def _refuse_unless_regular(path: Path, status: os.stat_result | None = None) -> None:
    """Refuse ``path`` (as ``status`` says it is, else as it is now) unless it is a regular
    file of one name: written in place, a file of several names changes under all of them.

    Raises:
        UsageError: it is anything else.
    """
    if status is None:
        try:
            status = os.lstat(path)
        except OSError:
            raise UsageError(f"{path} is not a regular file; choose another --out") from None
    if stat.S_ISREG(status.st_mode) and status.st_nlink <= 1:
        return
    raise UsageError(
        f"{path} is {_kind(status)}: the export writes its output, journal and lock only as "
        "regular files of one name, never through a link; remove it or choose another --out"
    )


def existing_regular(path: Path) -> bool:
    """Whether ``path`` exists (a dangling symbolic link does).

    Raises:
        UsageError: it exists and is no regular file of one name.
    """
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return False
    _refuse_unless_regular(path, status)
    return True


def open_regular(path: Path, flags: int, files: FileOperations = OS_FILES) -> int:
    """Open the regular file ``path`` with ``flags``, neither following a symbolic link nor
    waiting for a FIFO; the descriptor is blocking, as usual.

    Raises:
        UsageError: ``path`` is a symbolic link, a FIFO, a directory, a device, a socket, or
            a file of several names (hard links).
        OSError: it cannot be opened for another reason (it does not exist, permissions).
    """
    try:
        fd = files.open(path, flags | _SAFE_OPEN)
    except OSError as exc:
        if exc.errno in _NOT_REGULAR_ERRNOS:
            _refuse_unless_regular(path)
        raise
    with _closed_on_error(fd):
        _refuse_unless_regular(path, os.fstat(fd))
        os.set_blocking(fd, True)
    return fd


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
                fd = open_regular(path, os.O_RDWR | os.O_CREAT)
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
        named = os.lstat(path)
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


def _write_all(files: FileOperations, fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = files.write(fd, view)
        view = view[written:]


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def _closed_on_error(fd: int) -> Iterator[None]:
    """Close ``fd`` if the block fails: the object that would own it is never made."""
    try:
        yield
    except BaseException:
        os.close(fd)
        raise


def _cut(files: FileOperations, fd: int, size: int) -> None:
    """Truncate the file of ``fd`` to ``size`` bytes, durably, and write on from there."""
    files.truncate(fd, size)
    files.fsync(fd)
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

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self.format: str | None = None
        self.start = 0
        self.end = 0
        self.finished: set[tuple[str, str]] = set()
        self.complete_bytes = 0
        """The length of the journal's complete lines; a torn last line lies beyond it."""
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
    it (``with`` closes it). `finished` holds the channels already in the file. ``files`` are
    the operations that write them (the operating system's).
    """

    def __init__(
        self,
        path: Path,
        out_fd: int,
        journal_fd: int,
        end: int,
        finished: set[tuple[str, str]],
        files: FileOperations = OS_FILES,
    ) -> None:
        self.path = path
        self._out_fd = out_fd
        self._journal_fd = journal_fd
        self._end = end
        self._files = files
        self._journal_size = os.fstat(journal_fd).st_size
        self._journal_torn = False
        self._failed: OSError | None = None
        """Why a commit failed, once one has."""
        # Held by `commit` (run in a worker thread) and `close`, so that the files are never
        # closed under a commit, whose fd numbers could otherwise be reused by another file.
        self._lock = threading.Lock()
        self.finished = finished
        """The ``(interaction_sid, channel_sid)`` of every channel whose rows are in the file."""

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        file_format: str,
        header: bytes,
        force: bool,
        files: FileOperations = OS_FILES,
    ) -> Self:
        """Start a new output file ``path`` (with ``header``) and its journal.

        Raises:
            UsageError: the file or its journal exists and ``force`` is false, or either is
                no regular file.
            OSError: the files cannot be written.
        """
        for existing in (path, journal_path(path)):
            if existing_regular(existing) and not force:
                raise UsageError(
                    f"{existing} already exists: pass --resume to continue that export, "
                    "or --force to start over"
                )
        return cls._start(path, file_format=file_format, header=header, files=files)

    @classmethod
    def resume(
        cls, path: Path, *, file_format: str, header: bytes, files: FileOperations = OS_FILES
    ) -> Self:
        """Continue the export in ``path``: drop what follows the last finished channel.

        With neither the file nor its journal on disk, this starts a new file.

        Raises:
            UsageError: the journal is missing, corrupt, of another format, or says more than
                the file holds; or either is no regular file.
            OSError: the files cannot be read or written.
        """
        journal_file = journal_path(path)
        if not existing_regular(journal_file):
            if existing_regular(path):
                raise UsageError(
                    f"{path} has no journal {journal_file.name}, so it cannot be resumed; "
                    "pass --force to start over"
                )
            return cls._start(path, file_format=file_format, header=header, files=files)
        journal_fd = open_regular(journal_file, os.O_RDWR, files)
        with _closed_on_error(journal_fd):
            journal = _Journal(journal_file, _read_all(journal_fd))
            if journal.format is not None:
                return cls._continue(path, journal, journal_fd, file_format, files)
        os.close(journal_fd)  # the first run ended before its journal was begun
        return cls._start(path, file_format=file_format, header=header, files=files)

    @classmethod
    def _continue(
        cls, path: Path, journal: _Journal, journal_fd: int, file_format: str, files: FileOperations
    ) -> Self:
        if journal.format != file_format:
            raise UsageError(
                f"{path} was exported as {journal.format}; resume it with --format {journal.format}"
            )
        out_fd = open_regular(path, os.O_WRONLY | os.O_CREAT, files)
        with _closed_on_error(out_fd):
            size = os.fstat(out_fd).st_size
            if size < journal.end:
                raise UsageError(
                    f"{path} holds {size} bytes but its journal says {journal.end}; cannot resume"
                )
            _cut(files, out_fd, journal.end)
            _cut(files, journal_fd, journal.complete_bytes)
        return cls(path, out_fd, journal_fd, journal.end, journal.finished, files)

    @classmethod
    def _start(cls, path: Path, *, file_format: str, header: bytes, files: FileOperations) -> Self:
        # The journal is emptied first: until its first line is written whole, it says that
        # this run has not begun, and a resume starts over, whatever the output then holds.
        journal_fd = open_regular(journal_path(path), os.O_WRONLY | os.O_CREAT, files)
        with _closed_on_error(journal_fd):
            _cut(files, journal_fd, 0)
            _sync_directory(path.parent)
            out_fd = open_regular(path, os.O_WRONLY | os.O_CREAT, files)
            with _closed_on_error(out_fd):
                _cut(files, out_fd, 0)
                _write_all(files, out_fd, header)
                files.fsync(out_fd)
                line = f"# flex-participants journal v1 format={file_format} start={len(header)}\n"
                _write_all(files, journal_fd, line.encode())
                files.fsync(journal_fd)
        _sync_directory(path.parent)
        return cls(path, out_fd, journal_fd, len(header), set(), files)

    def commit(self, interaction_sid: str, channel_sid: str, data: bytes) -> None:
        """Append one finished channel's rows, then journal it; both reach the disk first.

        Raises:
            OSError: the write failed, or one before it did; the channel is not journaled,
                and nothing more is committed (a resume drops whatever part of ``data`` was
                written). Failures can still be noted.
            ValueError: the output is closed.
        """
        with self._lock:
            if self._out_fd < 0:
                raise ValueError("commit to a closed JournaledOutput")
            if self._failed is not None:
                raise OSError(errno.EIO, f"an earlier write failed: {self._failed}", self.path)
            try:
                if data:
                    _write_all(self._files, self._out_fd, data)
                    self._files.fsync(self._out_fd)
                self._append(f"{interaction_sid},{channel_sid},{self._end + len(data)}\n", True)
            except OSError as exc:
                # The output now ends in rows no journal line covers: a commit after them
                # would be journaled at the wrong offset.
                self._failed = exc
                raise
            self._end += len(data)
            self.finished.add((interaction_sid, channel_sid))

    def note_failure(self, interaction_sid: str, channel_sid: str, reason: str) -> None:
        """Note in the journal that a channel failed, and why: the name of its error.

        Not flushed to disk on its own: a note lost in a crash costs nothing, since a resume
        retries every channel not journaled as finished.

        Raises:
            OSError: the write failed (the journal is as it was before it, if it can be).
            ValueError: the output is closed.
        """
        # JSON, so that SIDs from the input, whatever they hold, stay on this one line.
        sids = json.dumps([interaction_sid, channel_sid])
        with self._lock:
            if self._journal_fd < 0:
                raise ValueError("note to a closed JournaledOutput")
            self._append(f"# failed {sids} {reason}\n", False)

    def _append(self, line: str, sync: bool) -> None:
        """Append ``line`` to the journal (and flush it to disk if ``sync``), or, if that
        fails, cut the journal back to its last whole line, so that a later line cannot
        continue a torn one and be misread."""
        if self._journal_torn:
            raise OSError(errno.EIO, "the journal ends in a torn line", journal_path(self.path))
        data = line.encode()
        try:
            _write_all(self._files, self._journal_fd, data)
            if sync:
                self._files.fsync(self._journal_fd)
        except OSError:
            try:
                _cut(self._files, self._journal_fd, self._journal_size)
            except OSError:
                self._journal_torn = True
            raise
        self._journal_size += len(data)

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
