"""``python -m flex_participants.emulator``: see `flex_participants.emulator._command`."""

import sys

from ._command import main

sys.exit(main())
