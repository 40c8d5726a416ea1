"""``python -m bench``: see `bench._harness`."""

import sys

from ._spawner import Spawner


def _run() -> int:
    # Started before anything else is imported, while this process is small: see _spawner.
    spawner = Spawner()
    try:
        from ._harness import main

        return main(spawner=spawner)
    finally:
        spawner.close()


sys.exit(_run())
