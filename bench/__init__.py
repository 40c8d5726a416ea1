"""The benchmark: this SDK, the official ``twilio`` package and a hand-written reference loop,
side by side against the emulator in a process of its own.

Run it with ``nox -s bench`` (``-- --quick`` for a smoke run), or ``python -m bench --help``
from the repository's root.
"""
