"""The two rich consoles: stdout for results and reports, stderr for progress and logs."""

from __future__ import annotations

import functools

from rich.console import Console

__all__ = ["stderr_console", "stdout_console"]


@functools.cache
def stdout_console() -> Console:
    """Where results and reports go."""
    return Console()


@functools.cache
def stderr_console() -> Console:
    """Where the progress bar and log messages go."""
    return Console(stderr=True)
