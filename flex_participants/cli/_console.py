"""The two rich consoles, and how text from elsewhere is made inert before it reaches them.

stdout carries only data (``list``'s table); everything a person reads (progress, summaries,
failures, warnings) goes to stderr. Text that comes from the server, the input or the user
(participant data, error messages, file names) is never given to rich as markup, and its
control characters are shown escaped, so that it can neither style, link, move the cursor
nor hide what follows.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported on first use: `main` checks it is installed, with this
    from rich.console import Console
    from rich.text import Text

__all__ = ["inert", "printable", "stderr_console", "stdout_console"]

# C0 and C1 controls (ESC, CSI, BEL, CR, ...) and DEL; the bidirectional controls, which can
# make a line read other than it is ("Trojan Source"); line and paragraph separators; and
# lone surrogates, which no terminal encoding can carry.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character, bidi control and lone surrogate escaped (``\\x1b``)."""
    return _UNSAFE.sub(_escape, text)


def inert(text: str, style: str = "") -> Text:
    """``text`` as a rich `Text` that no markup in it is read as, escaped by `printable`."""
    from rich.text import Text

    return Text(printable(text), style=style)


@functools.cache
def stdout_console() -> Console:
    """Where data goes: ``list``'s table."""
    from rich.console import Console

    return Console()


@functools.cache
def stderr_console() -> Console:
    """Where what a person reads goes: the progress bar, reports, warnings and logs."""
    from rich.console import Console

    return Console(stderr=True)
