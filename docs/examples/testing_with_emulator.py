"""Testing your own code against the emulator, with the ``flex_emulator`` pytest fixture.

The fixture comes with the package (it needs pytest-asyncio): a started `FlexEmulator` with
no channels, stopped after the test. The file needs no configuration: ``pytestmark`` marks
its tests as asyncio tests, as pytest-asyncio's default (strict) mode asks. With
``asyncio_mode = "auto"`` in your pytest configuration, the mark may go.

    pip install flex-participants pytest pytest-asyncio
    pytest testing_with_emulator.py
"""

import pytest

from flex_participants import FlexClient, ParticipantType, RetryPolicy, ServerError
from flex_participants.emulator import Fault, FlexEmulator

pytestmark = pytest.mark.asyncio

# Retries without waiting, so that tests of failures stay fast.
NO_WAIT = RetryPolicy(backoff_base=0.0)


async def count_agents(client: FlexClient, interaction_sid: str, channel_sid: str) -> int:
    """The code under test."""
    async with client.participants(interaction_sid, channel_sid) as stream:
        return sum([p.type is ParticipantType.AGENT async for p in stream])


async def test_counts_the_agents_of_a_channel(flex_emulator: FlexEmulator) -> None:
    # 240 generated participants: five pages of 50. The data depends only on the seed.
    kd, uo = flex_emulator.add_channel(participants=240)
    served = flex_emulator.participants_of(kd, uo)
    async with FlexClient(**flex_emulator.client_kwargs()) as client:
        agents = await count_agents(client, kd, uo)
    assert agents == sum(p["type"] == "agent" for p in served)
    assert flex_emulator.stats.requests == 5


async def test_counts_participants_given_as_data(flex_emulator: FlexEmulator) -> None:
    # Participants served exactly as given: any field left out is served as missing.
    kd, uo = flex_emulator.add_channel(
        participants=[
            {"sid": f"UT{n:032x}", "type": kind}
            for n, kind in enumerate(["agent", "customer", "agent", "supervisor"])
        ]
    )
    async with FlexClient(**flex_emulator.client_kwargs()) as client:
        assert await count_agents(client, kd, uo) == 2


async def test_survives_two_server_errors(flex_emulator: FlexEmulator) -> None:
    kd, uo = flex_emulator.add_channel(participants=10)
    flex_emulator.add_fault(Fault("status", status=503, times=2))
    async with FlexClient(**flex_emulator.client_kwargs(), retry=NO_WAIT) as client:
        assert await count_agents(client, kd, uo) >= 0
        assert client.retries == 2
    assert flex_emulator.stats.faults_fired == 2


async def test_gives_up_when_the_server_stays_down(flex_emulator: FlexEmulator) -> None:
    kd, uo = flex_emulator.add_channel(participants=10)
    # A proxy's HTML error page on every attempt (4 with the default policy).
    flex_emulator.add_fault(Fault("html", status=502, times=4))
    async with FlexClient(**flex_emulator.client_kwargs(), retry=NO_WAIT) as client:
        with pytest.raises(ServerError) as caught:
            await count_agents(client, kd, uo)
    assert caught.value.status == 502
    assert caught.value.attempts == 4
