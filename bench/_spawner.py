"""A small process that starts the benchmark's worker processes, so that their peak RSS is
their own.

Linux carries a process's peak RSS across ``fork`` and ``execve``: a child started by the
harness, which holds datasets of a million SIDs, would report the harness's peak as its own in
``ru_maxrss``. This process is started first, while the harness is still small, and starts
every worker; it imports nothing but the standard library's ``json``, ``subprocess`` and ``sys``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["Closing", "Spawner", "stop_process"]

_LOOP = """
import json, subprocess, sys
for line in sys.stdin:
    request = json.loads(line)
    done = subprocess.run(
        request["argv"], cwd=request["cwd"], capture_output=True, text=True,
        timeout=request["timeout"], check=False,
    )
    sys.stdout.write(json.dumps([done.returncode, done.stdout, done.stderr]) + "\\n")
    sys.stdout.flush()
"""


class Spawner:
    """Runs commands to completion in a process started now; use before the harness grows."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter
            [sys.executable, "-S", "-c", _LOOP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: Sequence[str], cwd: Path, timeout: float) -> tuple[int, str, str]:
        """Run ``argv`` in ``cwd``; return its exit status, standard output and error."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        request = {"argv": list(argv), "cwd": str(cwd), "timeout": timeout}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the spawner process ended")
        returncode, stdout, stderr = json.loads(line)
        return int(returncode), str(stdout), str(stderr)

    def close(self) -> None:
        """Let the process end (it ends at the end of its input) and wait for it."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)
        if self._process.stdout is not None:
            self._process.stdout.close()


class Closing:
    """A context manager whose way out is `close`: what it started ends with the block."""

    def close(self) -> None:
        """End what was started; a second call does nothing."""
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate ``process`` and wait for it; kill it if it has not ended within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
