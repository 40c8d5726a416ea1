"""``python -m flex_participants``: the ``flex-participants`` command line."""

from flex_participants.cli import main

raise SystemExit(main())
