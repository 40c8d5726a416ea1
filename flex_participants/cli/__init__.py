"""The ``flex-participants`` command line: ``list``, ``export``, ``emulator`` and ``demo``.

A front end over the public API only (`flex_participants` and `flex_participants.emulator`).
It needs rich (``pip install 'flex-participants[cli]'``); without it, `main` says so and
returns 2.
"""

from ._main import main

__all__ = ["main"]
