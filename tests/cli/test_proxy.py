"""``--proxy URL``: ``list`` and ``export`` send every request through an HTTP proxy, and a URL
that is no ``http://`` proxy is a one-line usage error before any request."""

from __future__ import annotations

from pathlib import Path

import pytest

from flex_participants.emulator import FlexEmulator

from ..proxy_servers import ForwardingProxy
from .helpers import (
    add_channels,
    assert_grouped_exactly_once,
    assert_one_line_error,
    export_of,
    read_rows,
    run_cli,
)


async def test_list_sends_every_request_through_the_proxy(flex_emulator: FlexEmulator) -> None:
    kd, uo = flex_emulator.add_channel(participants=7)
    async with ForwardingProxy() as proxy:
        run = await run_cli(
            "list", kd, uo, "--format", "jsonl", "--proxy", proxy.url, emulator=flex_emulator
        )

    assert run.code == 0, run
    assert len(run.stdout.splitlines()) == 7
    assert [request.target for request in proxy.seen] == [
        f"{flex_emulator.base_url}/v1/Interactions/{kd}/Channels/{uo}/Participants"
    ]


async def test_export_sends_every_request_through_the_proxy_with_its_credentials(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    channels = add_channels(flex_emulator, [2, 0, 5])
    export, out = export_of(tmp_path, channels)
    async with ForwardingProxy(("alice", "proxy-password")) as proxy:
        url = proxy.url.replace("http://", "http://alice:proxy-password@")
        run = await run_cli(*export, "--proxy", url, emulator=flex_emulator)

    assert run.code == 0, run
    assert len(proxy.seen) == flex_emulator.stats.requests == len(channels)
    assert_grouped_exactly_once(read_rows(out, "jsonl"), flex_emulator, channels)
    assert "proxy-password" not in run.stderr


@pytest.mark.parametrize(
    "proxy",
    ["https://alice:proxy-password@proxy.example:8443", "socks5://127.0.0.1:1080", "proxy"],
    ids=["https", "socks", "no-scheme"],
)
@pytest.mark.parametrize("command", ["list", "export"])
async def test_a_proxy_that_is_no_http_url_is_a_usage_error(
    flex_emulator: FlexEmulator, tmp_path: Path, command: str, proxy: str
) -> None:
    [(kd, uo)] = add_channels(flex_emulator, [1])
    arguments = ["list", kd, uo] if command == "list" else export_of(tmp_path, [(kd, uo)])[0]
    run = await run_cli(*arguments, "--proxy", proxy, emulator=flex_emulator)

    assert_one_line_error(run, 2, "proxy must be an http:// URL")
    assert "proxy-password" not in run.stderr
    assert flex_emulator.stats.requests == 0
    assert not (tmp_path / "out.jsonl").exists()
