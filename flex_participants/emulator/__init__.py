"""A loopback emulator of Flex's "List all Participants for a Channel" endpoint.

Serves the endpoint over real HTTP, as Twilio does, so that tests, demos and benchmarks need
no Twilio account::

    async with FlexEmulator(seed=7, channels=300) as emulator:
        async with FlexClient(**emulator.client_kwargs()) as client:
            kd, uo = emulator.channels[0]
            participants = await client.participants(kd, uo).collect()

Run it on its own with ``python -m flex_participants.emulator --help`` (or ``flex-participants
emulator``, the same program); a program of your own can serve one the same way, with
`add_program_arguments` and `serve_program`, or with `add_emulator_arguments`,
`emulator_from_arguments` and `serve_until_stopped` to say itself where it listens. With pytest and pytest-asyncio installed, the ``flex_emulator``
fixture yields a running one.
"""

from ._command import (
    DEFAULT_CHANNELS,
    ProgramError,
    add_emulator_arguments,
    add_program_arguments,
    emulator_from_arguments,
    serve_program,
    serve_until_stopped,
)
from ._emulator import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    MAX_CHANNELS,
    ClientKwargs,
    FlexEmulator,
)
from ._faults import Fault, FaultKind
from ._stats import EmulatorStats, RequestRecord

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "DEFAULT_CHANNELS",
    "MAX_CHANNELS",
    "ClientKwargs",
    "EmulatorStats",
    "Fault",
    "FaultKind",
    "FlexEmulator",
    "ProgramError",
    "RequestRecord",
    "add_emulator_arguments",
    "add_program_arguments",
    "emulator_from_arguments",
    "serve_program",
    "serve_until_stopped",
]
