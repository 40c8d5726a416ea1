"""OutputLock: one export per output file, held with an OS file lock on ``OUT.lock``.

Two exports writing the same output would truncate and interleave each other's rows and
journal lines. So an export first takes an exclusive ``flock`` on a lock file next to the
output, without waiting: a second export finds it held and stops before it touches anything.
The operating system releases the lock when the process ends, however it ends (even by
SIGKILL), so a crashed export never blocks the next one. The lock file holds the pid of its
holder, to name it; it is removed when the export ends, and left (unlocked, harmless) by a
crash.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from ._errors import CommandError, OutputLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX (Windows)
    _HAVE_FLOCK = False
else:
    _HAVE_FLOCK = True

__all__ = ["LOCK_SUFFIX", "OutputLock", "lock_path"]

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
