"""Every code sample of the docs runs here, against the emulator, so that none of them rots.

The samples live in ``docs/examples/`` and the pages include them whole; no page holds a
Python block of its own. The samples read their credentials, base URL and Redis URL from the
environment, as production code does; the ``emulator`` fixture points TWILIO_* and
FLEX_PARTICIPANTS_BASE_URL at a running `FlexEmulator`, and ``redis_url`` points REDIS_URL at
the session's redis-server. The arq samples run under real arq workers, and their job
functions in process too; only the FastAPI app, which needs a package the project does not
depend on, is compiled and not run. Every sample with a command line is also run as a user
runs it, copied into a directory of its own where nothing of this project's applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

import flex_participants
import flex_participants.emulator
from flex_participants import RetryPolicy
from flex_participants.emulator import Fault, FlexEmulator

from .conftest import RedisServer
from .helpers import CLIENT_VARIABLES, in_virtual_time, without_client_variables
from .proxy_servers import ForwardingProxy, TLSFront

if TYPE_CHECKING:
    # The redis extra is optional: only the tests that talk to Redis import it at run time.
    import redis.asyncio as aioredis

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"

MISSING_KD = "KD" + "0" * 32
MISSING_UO = "UO" + "0" * 32
# The Redis database the samples get, emptied before each test: the other tests use db 0.
SAMPLES_DB = 1
# Samples that are test files themselves: pytest runs them, as a user would.
PYTEST_SAMPLES = ("testing_with_emulator.py", "testing_with_aioresponses.py")
# Samples that need a package the project does not depend on: compiled, not run.
COMPILED_ONLY = ("web_app_fastapi.py",)
# The arq samples: their job functions are run here in process, and under real arq workers.
ARQ_SAMPLES = ("worker_arq.py", "arq_fleet.py")


def load(name: str) -> Any:
    """Import ``docs/examples/{name}.py`` as a module of its own (its ``__main__`` part unrun)."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_examples_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.asynccontextmanager
async def serving(monkeypatch: pytest.MonkeyPatch, **options: Any) -> AsyncIterator[FlexEmulator]:
    """Run a `FlexEmulator(**options)`, with TWILIO_* and FLEX_PARTICIPANTS_BASE_URL at it."""
    for name in CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    async with FlexEmulator(seed=2024, **options) as running:
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", running.account_sid)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", running.auth_token)
        monkeypatch.setenv("FLEX_PARTICIPANTS_BASE_URL", running.base_url)
        yield running


@pytest_asyncio.fixture
async def emulator(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FlexEmulator]:
    """A running emulator, with TWILIO_* and FLEX_PARTICIPANTS_BASE_URL pointing at it."""
    async with serving(monkeypatch) as running:
        yield running


@contextlib.asynccontextmanager
async def samples_db(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of the samples' database of the session's redis-server, closed after."""
    client = redis_server.client(SAMPLES_DB)
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def redis_url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """REDIS_URL pointing at an empty database of the session's redis-server."""
    pytest.importorskip(
        "redis", reason="the redis extra is not installed: pip install -e '.[redis]'"
    )
    async with samples_db(redis_server) as client:
        await client.flushdb()
    url = redis_server.url(SAMPLES_DB)
    monkeypatch.setenv("REDIS_URL", url)
    return url


def types_of(participants: list[dict[str, Any]]) -> Counter[str]:
    return Counter(p["type"] for p in participants)


# -- quickstart.md ------------------------------------------------------------------------


async def test_quickstart_prints_every_participant_of_the_channel(
    emulator: FlexEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    kd, uo = emulator.add_channel(participants=120)
    served = emulator.participants_of(kd, uo)

    await load("quickstart").main(kd, uo)

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [p["sid"] for p in served]
    assert emulator.stats.requests == 3


async def test_try_emulator_needs_no_account(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    await load("try_emulator").main()

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "120 participants in 3 requests"
    assert len(lines) == 4


# -- quickstart.md: proxies and TLS -----------------------------------------------------


async def test_proxies_and_tls_reach_the_origin_through_the_proxy_with_the_corporate_ca(
    emulator: FlexEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kd, uo = emulator.add_channel(participants=30)  # one page: its meta names the emulator
    async with (
        TLSFront(emulator.port) as front,
        ForwardingProxy(("alice", "proxy-password")) as proxy,
    ):
        bundle = tmp_path / "corporate-ca.pem"
        front.ca.cert_pem.write_to_path(str(bundle))
        monkeypatch.setenv("CORPORATE_CA_BUNDLE", str(bundle))
        monkeypatch.setenv("CORPORATE_PROXY", f"http://alice:proxy-password@127.0.0.1:{proxy.port}")
        monkeypatch.setenv("FLEX_PARTICIPANTS_BASE_URL", front.base_url)
        sample = load("proxies_and_tls")

        assert await sample.count_participants(sample.corporate_client(), kd, uo) == 30
    assert [seen.method for seen in proxy.seen] == ["CONNECT"]


async def test_proxies_and_tls_reads_the_proxy_from_the_environment(
    emulator: FlexEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    kd, uo = emulator.add_channel(participants=30)
    async with ForwardingProxy() as proxy:
        # The emulator is plain http on loopback: HTTP_PROXY is the variable that applies.
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("http_proxy", raising=False)  # which would win over HTTP_PROXY
        sample = load("proxies_and_tls")

        assert await sample.count_participants(sample.client_from_the_environment(), kd, uo) == 30
    assert len(proxy.seen) == 1


# -- streaming.md -------------------------------------------------------------------------


async def test_stream_pages_walks_by_participant_by_page_and_up_to_a_limit(
    emulator: FlexEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    kd, uo = emulator.add_channel(participants=450)
    served = emulator.participants_of(kd, uo)
    first_agent = next(p["sid"] for p in served if p["type"] == "agent")

    await load("stream_pages").main(kd, uo)

    assert capsys.readouterr().out.splitlines() == [
        f"first agent: {first_agent}",
        "page 0: 200 participants",
        "page 1: 200 participants",
        "page 2: 50 participants",
        f"sample: {[p['sid'] for p in served[:10]]}",
    ]
    # The sample's request asks for one page of 10, not a page of 50.
    assert emulator.stats.log[-1].page_size == 10


async def test_resume_sample_exports_in_chunks_and_a_restart_goes_on_where_it_stopped(
    emulator: FlexEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kd, uo = emulator.add_channel(participants=130)
    served = [p["sid"] for p in emulator.participants_of(kd, uo)]
    saved = tmp_path / "cursor"
    sample = load("resume")

    async with flex_participants.FlexClient() as client:
        assert await sample.export_chunk(client, kd, uo, saved, 45) == 45
    # A new process: only the saved cursor is left.
    await sample.main(kd, uo, saved, chunk=40)

    assert capsys.readouterr().out.split() == served
    async with flex_participants.FlexClient() as client:
        assert await sample.export_chunk(client, kd, uo, saved, 40) == 0


# -- batch.md -----------------------------------------------------------------------------


async def test_batch_export_writes_a_line_per_channel_and_counts_failures(
    emulator: FlexEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    channels = [emulator.add_channel(participants=n) for n in (0, 3, 75, 1200)]
    channels_csv = tmp_path / "channels.csv"
    # With its header, as the emulator's --channel-list writes it: no channel of its own.
    flex_participants.write_channel_list(channels_csv, [*channels, (MISSING_KD, MISSING_UO)])
    output = tmp_path / "participants.jsonl"

    failed = await load("batch_export").main(channels_csv, output)

    assert failed == 1
    assert capsys.readouterr().out == "5 channels, 1 failed\n"
    lines = {line["channel_sid"]: line for line in map(json.loads, output.read_text().splitlines())}
    assert len(lines) == 5
    for kd, uo in channels:
        assert lines[uo]["participants"] == emulator.participants_of(kd, uo)
    assert "HTTP 404" in lines[MISSING_UO]["error"]


async def test_batch_export_refuses_a_malformed_line_before_any_request(
    emulator: FlexEmulator, tmp_path: Path
) -> None:
    channels_csv = tmp_path / "channels.csv"
    channels_csv.write_text(f"KD-not-a-sid,UO-not-a-sid\n{MISSING_KD},{MISSING_UO}\n")

    with pytest.raises(flex_participants.ChannelListError, match="line 1 is not a channel"):
        await load("batch_export").main(channels_csv, tmp_path / "participants.jsonl")

    assert emulator.stats.requests == 0


# -- web-apps.md --------------------------------------------------------------------------


async def test_aiohttp_app_serves_participants_from_its_one_client(emulator: FlexEmulator) -> None:
    kd, uo = emulator.add_channel(participants=60)
    served = emulator.participants_of(kd, uo)
    app = load("web_app_aiohttp").create_app()
    route = f"/interactions/{kd}/channels/{uo}/participants"

    async with TestClient(TestServer(app)) as http:
        response = await http.get(route)
        assert response.status == 200
        assert (await response.json())["participants"] == served

        response = await http.get(route + ".jsonl")
        assert response.status == 200
        assert [json.loads(line) for line in (await response.text()).splitlines()] == served

        response = await http.get(f"/interactions/{MISSING_KD}/channels/{MISSING_UO}/participants")
        assert response.status == 404
        response = await http.get("/interactions/KD1/channels/UO1/participants")
        assert response.status == 400

    assert emulator.stats.requests == 5


def test_fastapi_app_compiles() -> None:
    # FastAPI is not a dependency of the project: the sample is compiled, not run.
    path = EXAMPLES / "web_app_fastapi.py"
    compile(path.read_text(), str(path), "exec")


# -- workers.md ---------------------------------------------------------------------------


async def test_asyncio_worker_counts_every_job_and_logs_the_failed_ones(
    emulator: FlexEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    channels = [emulator.add_channel(participants=n) for n in (5, 50, 51, 130, 0, 9, 700)]
    jobs = [*channels[:3], (MISSING_KD, MISSING_UO), *channels[3:]]

    with caplog.at_level(logging.ERROR, logger="worker"):
        counts = await load("worker").main(jobs, workers=3)

    assert counts == {uo: types_of(emulator.participants_of(kd, uo)) for kd, uo in channels}
    assert [record.getMessage().split(":")[0] for record in caplog.records] == [
        f"channel {MISSING_UO} failed"
    ]


async def test_arq_worker_functions_share_one_client(emulator: FlexEmulator) -> None:
    worker = load("worker_arq")
    kd, uo = emulator.add_channel(participants=80)
    ctx: dict[str, Any] = {}

    await worker.startup(ctx)
    try:
        counts = await worker.count_participants(ctx, kd, uo)
        missing = await worker.count_participants(ctx, MISSING_KD, MISSING_UO)
    finally:
        await worker.shutdown(ctx)

    assert counts == dict(types_of(emulator.participants_of(kd, uo)))
    assert missing is None
    assert ctx["flex_client"].closed
    assert worker.WorkerSettings.functions == (worker.count_participants,)


# -- scale-out.md -------------------------------------------------------------------------


async def test_shared_budget_fetches_every_channel_under_the_limit_kept_in_redis(
    emulator: FlexEmulator,
    redis_server: RedisServer,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    channels = [emulator.add_channel(participants=n) for n in (0, 3, 75, 250)]

    await load("shared_budget").main([*channels, (MISSING_KD, MISSING_UO)])

    *results, fleet, rate = capsys.readouterr().out.splitlines()
    failed = [line for line in results if line.startswith(f"{MISSING_UO} failed:")]
    assert len(failed) == 1
    assert "HTTP 404" in failed[0]
    assert sorted(line for line in results if line not in failed) == sorted(
        f"{uo} {len(emulator.participants_of(kd, uo))}" for kd, uo in channels
    )
    # The slots were taken and given back in Redis, in the database of REDIS_URL.
    summary = re.fullmatch(r"fleet: 0 in flight now, at most (\d+) at once", fleet)
    assert summary is not None, fleet
    assert 1 <= int(summary[1]) <= 20
    # The fleet shares Twilio's documented 20 requests a second, as a token bucket in Redis.
    assert rate == "fleet: 20 requests a second now"
    async with samples_db(redis_server) as client:
        assert await client.dbsize() > 0  # emptied before the test


async def test_arq_fleet_workers_run_their_jobs_under_one_budget_in_redis(
    redis_server: RedisServer,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cap = 2
    monkeypatch.setenv("FLEET_MAX_CONCURRENCY", str(cap))
    monkeypatch.setenv("FLEET_RATE_LIMIT", "500")
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the sample builds on worker_arq.py, next to it
    fleet = load("arq_fleet")
    job = fleet.worker_arq.count_participants
    assert fleet.WorkerSettings.functions == (job,)
    # The emulator answers 429 to any request above the cap: a fleet that kept it sees none.
    async with serving(monkeypatch, latency=0.02, max_in_flight=cap) as emulator:
        channels = [emulator.add_channel(participants=n) for n in (1, 60, 120, 7, 200, 40)]
        workers: list[dict[str, Any]] = [{}, {}]
        for ctx in workers:
            await fleet.startup(ctx)
        try:
            jobs = [job(workers[n % 2], kd, uo) for n, (kd, uo) in enumerate(channels)]
            *counts, missing = await asyncio.gather(*jobs, job(workers[0], MISSING_KD, MISSING_UO))
        finally:
            for ctx in workers:
                await fleet.shutdown(ctx)

        assert counts == [dict(types_of(emulator.participants_of(kd, uo))) for kd, uo in channels]
        assert missing is None
        assert emulator.stats.throttled == 0
        assert 1 < emulator.stats.peak_in_flight <= cap
    assert all(ctx["flex_client"].closed for ctx in workers)

    from flex_participants.redis import RedisLimiter  # here: the redis extra is optional

    async with samples_db(redis_server) as client:
        limiter = RedisLimiter(client, key="flex_participants:my-account", max_concurrency=cap)
        state = await limiter.read_state()
    assert (state.in_flight, state.waiting, state.throttled) == (0, 0, 0)
    assert state.peak_in_flight == emulator.stats.peak_in_flight
    async with samples_db(redis_server) as client:
        assert await fleet_bucket_used(client)  # the per-second budget is shared too


# -- workers.md and scale-out.md: the arq samples under a real arq worker -----------------


async def run_in(
    project: Path, *command: str, env: dict[str, str], stdin: str = ""
) -> tuple[int, str, str]:
    """Run ``python COMMAND`` in ``project`` to its end, with ``stdin`` as its input, while
    the emulator serves on this loop; its exit code, its stdout and its stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        cwd=project,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate(stdin.encode())
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def job_results(redis_url: str) -> dict[tuple[str, str], Any]:
    """What arq kept of each job that ran, by its arguments; each job must have succeeded."""
    from arq import create_pool
    from arq.connections import RedisSettings

    queue = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        results = await queue.all_job_results()
    finally:
        await queue.aclose()
    assert all(result.success for result in results), results
    return {(result.args[0], result.args[1]): result.result for result in results}


def sample_environment(emulator: FlexEmulator, redis_url: str, **variables: str) -> dict[str, str]:
    """A user's environment for the samples: the emulator's credentials and REDIS_URL."""
    return user_environment(
        TWILIO_ACCOUNT_SID=emulator.account_sid,
        TWILIO_AUTH_TOKEN=emulator.auth_token,
        FLEX_PARTICIPANTS_BASE_URL=emulator.base_url,
        REDIS_URL=redis_url,
        **variables,
    )


async def test_arq_worker_runs_the_queued_jobs_under_arq(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("arq", reason="arq is not installed: pip install --group test")
    project = fresh_project(tmp_path, *ARQ_SAMPLES)
    async with serving(monkeypatch) as emulator:
        channels = [emulator.add_channel(participants=n) for n in (5, 60, 130)]
        environment = sample_environment(emulator, redis_url)
        sids = [sid for channel in [*channels, (MISSING_KD, MISSING_UO)] for sid in channel]
        # Queued as the docs say, by the fleet sample's enqueue; run by the single worker.
        assert await run_in(project, "arq_fleet.py", *sids, env=environment) == (0, "", "")
        code, out, err = await run_in(
            project, "-m", "arq", "worker_arq.WorkerSettings", "--burst", env=environment
        )
        assert code == 0, out + err

        assert await job_results(redis_url) == {
            **{channel: dict(types_of(emulator.participants_of(*channel))) for channel in channels},
            (MISSING_KD, MISSING_UO): None,
        }


async def test_arq_fleet_of_two_arq_workers_keeps_one_budget(
    redis_server: RedisServer, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("arq", reason="arq is not installed: pip install --group test")
    from flex_participants.redis import RedisLimiter  # here: the redis extra is optional

    cap, rate = 2, 400
    project = fresh_project(tmp_path, *ARQ_SAMPLES)
    # The emulator answers 429 to any request above the cap: a fleet that kept it sees none.
    async with serving(monkeypatch, latency=0.02, max_in_flight=cap) as emulator:
        channels = [emulator.add_channel(participants=n) for n in (1, 60, 120, 7, 200, 40)]
        environment = sample_environment(
            emulator, redis_url, FLEET_MAX_CONCURRENCY=str(cap), FLEET_RATE_LIMIT=str(rate)
        )
        sids = [sid for channel in channels for sid in channel]
        assert await run_in(project, "arq_fleet.py", *sids, env=environment) == (0, "", "")
        worker = ("-m", "arq", "arq_fleet.WorkerSettings", "--burst")
        runs = await asyncio.gather(*(run_in(project, *worker, env=environment) for _ in "ab"))
        assert [code for code, _, _ in runs] == [0, 0], runs

        assert await job_results(redis_url) == {
            channel: dict(types_of(emulator.participants_of(*channel))) for channel in channels
        }
        assert emulator.stats.throttled == 0
        assert emulator.stats.peak_in_flight <= cap

    async with samples_db(redis_server) as client:
        limiter = RedisLimiter(client, key="flex_participants:my-account", max_concurrency=cap)
        state = await limiter.read_state()
        assert await fleet_bucket_used(client)
    assert (state.in_flight, state.waiting, state.throttled) == (0, 0, 0)


async def fleet_bucket_used(client: aioredis.Redis) -> bool:
    """Whether the fleet's requests took their starts from the token bucket of the key the
    samples use: its ``tat``, the theoretical arrival time (docs/scale-out.md), is set only by
    a limiter given ``rate_limit``."""
    async with client.pipeline() as pipe:  # typed alike by redis-py 5 and 8
        pipe.hget("{flex_participants:my-account}:state", "tat")
        [tat] = await pipe.execute()
    return tat is not None


# -- errors.md ----------------------------------------------------------------------------


async def test_errors_sample_retries_server_errors_and_logs_each_retry(
    emulator: FlexEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sample = load("errors")
    # The sample's policy with no waiting, so that the test does not sleep.
    monkeypatch.setattr(sample, "RETRY", RetryPolicy(max_attempts=6, backoff_base=0.0))
    kd, uo = emulator.add_channel(participants=70)
    emulator.add_fault(Fault("status", status=503, times=2))

    with caplog.at_level(logging.INFO, logger="flex_participants"):
        await sample.main(kd, uo)

    assert capsys.readouterr().out.splitlines() == [
        "participants: 70",
        "4 requests, 2 of them retries",
    ]
    assert len(caplog.records) == 2
    assert all(r.getMessage().startswith("retrying GET") for r in caplog.records)


async def test_errors_sample_returns_none_for_a_missing_channel(
    emulator: FlexEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    await load("errors").main(MISSING_KD, MISSING_UO)

    assert capsys.readouterr().out.splitlines() == [
        "participants: None",
        "1 requests, 0 of them retries",
    ]


async def test_errors_sample_reports_throttling_that_outlasts_the_retries(
    emulator: FlexEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = load("errors")
    monkeypatch.setattr(sample, "RETRY", RetryPolicy(max_attempts=3, backoff_base=0.0, patience=0))
    kd, uo = emulator.add_channel(participants=1)
    emulator.add_fault(Fault("status", status=429, retry_after=0, times=3))

    with pytest.raises(flex_participants.RateLimitError):
        await sample.main(kd, uo)

    assert capsys.readouterr().out == "throttled 3 times; server asked for 0.0 s\n"


async def test_per_call_sample_glances_and_exports(
    emulator: FlexEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    kd, uo = emulator.add_channel(participants=70)

    await load("per_call").main(kd, uo)

    assert capsys.readouterr().out.splitlines() == ["glance: 10", "export: 70"]


def test_per_call_sample_reports_a_glance_past_its_deadline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def main() -> None:
        async with FlexEmulator(latency=5.0) as running:
            kd, uo = running.add_channel(participants=3)
            async with flex_participants.FlexClient(**running.client_kwargs()) as client:
                assert await load("per_call").glance(client, kd, uo) is None

    in_virtual_time(main)
    assert capsys.readouterr().out == "no page within 3 s\n"


# -- rate-budget.md ---------------------------------------------------------------------


# In virtual time: the emulator's bucket and the client's run on one exact clock, so the
# count of 429s is the same on every machine, however busy.


def test_rate_budget_sample_untold_finds_the_budget_and_loses_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    throttled, rate = in_virtual_time(load("rate_budget").main)

    out = capsys.readouterr().out.splitlines()
    assert out[0] == "1200 participants of 60 channels"
    assert 0 < throttled <= 6
    assert rate is not None
    # Near the budget of 10: below it after the 429s, then probed back up, which a run of
    # 6 s may end in the middle of.
    assert 5.0 <= rate <= 15.0


def test_rate_budget_sample_told_provokes_no_429(capsys: pytest.CaptureFixture[str]) -> None:
    throttled, rate = in_virtual_time(functools.partial(load("rate_budget").main, 10.0))

    assert capsys.readouterr().out.splitlines() == [
        "1200 participants of 60 channels",
        "0 requests answered 429; the rate is now 10.0 /s",
    ]
    assert (throttled, rate) == (0, 10.0)


# -- observing.md -------------------------------------------------------------------------


@contextlib.contextmanager
def client_log_shown(sample: Any, *, verbose: bool) -> Iterator[None]:
    """The logging sample's ``show_client_log(verbose)``, undone on exit: its handler removed
    and the logger's level put back, so that no other test sees them."""
    logger = logging.getLogger("flex_participants")
    level = logger.level
    handler = sample.show_client_log(verbose=verbose)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def retrying_at_once(sample: Any) -> Any:
    """The sample, its `FlexClient` made with a retry policy that does not wait, so that a
    test of its retries does not sleep."""
    sample.FlexClient = functools.partial(sample.FlexClient, retry=RetryPolicy(backoff_base=0.0))
    return sample


async def test_observe_logging_sample_shows_the_retries_at_info_and_no_request_lines(
    emulator: FlexEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    kd, uo = emulator.add_channel(participants=70)
    emulator.add_fault(Fault("status", status=503, times=1))
    sample = load("observe_logging")
    with client_log_shown(sample, verbose=False):
        await sample.main(kd, uo)

    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["participants: 70"]
    [line] = captured.err.splitlines()
    assert line.startswith("INFO flex_participants: retrying GET ")
    assert line.endswith("(attempt 1 of 4 failed: HTTP 503)")


async def test_observe_logging_sample_shows_every_request_when_verbose(
    emulator: FlexEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    kd, uo = emulator.add_channel(participants=70)
    sample = load("observe_logging")
    with client_log_shown(sample, verbose=True):
        await sample.main(kd, uo)

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("DEBUG flex_participants: GET ") for line in lines)


@pytest.fixture
def failing_once(emulator: FlexEmulator) -> tuple[str, str]:
    """A channel of 120 participants (3 pages), whose first request is answered 503."""
    channel = emulator.add_channel(participants=120)
    emulator.add_fault(Fault("status", status=503, times=1))
    return channel


async def test_observe_hooks_sample_tallies_responses_retries_and_pages(
    failing_once: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    await retrying_at_once(load("observe_hooks")).main(*failing_once)

    assert capsys.readouterr().out.splitlines() == [
        "participants: 120 in 3 pages",
        "responses: 3 x 200, 1 x 503",
        "retried: 1 x ServerError",
        "stats: 4 requests, 1 retries, 0 429s, 0 in flight",
    ]


async def test_observe_otel_sample_traces_the_stream_under_the_apps_span(
    emulator: FlexEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    kd, uo = emulator.add_channel(participants=120)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    await load("observe_otel").main(kd, uo, provider)

    assert capsys.readouterr().out.splitlines() == ["participants: 120"]
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"report", "flex_participants.participants", "GET"}
    report, stream = spans["report"], spans["flex_participants.participants"]
    assert stream.parent is not None
    assert report.context is not None
    assert stream.parent.span_id == report.context.span_id
    requests = [span for span in exporter.get_finished_spans() if span.name == "GET"]
    assert len(requests) == 3
    assert stream.context is not None
    assert all(
        r.parent is not None and r.parent.span_id == stream.context.span_id for r in requests
    )


async def test_observe_prometheus_sample_counts_responses_retries_and_participants(
    failing_once: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()

    await retrying_at_once(load("observe_prometheus")).main(*failing_once, registry)

    assert capsys.readouterr().out.splitlines() == ["participants: 120"]
    value = registry.get_sample_value
    assert value("flex_participants_responses_total", {"status": "200"}) == 3
    assert value("flex_participants_responses_total", {"status": "503"}) == 1
    assert value("flex_participants_retries_total") == 1
    assert value("flex_participants_participants_delivered_total") == 120
    assert value("flex_participants_request_duration_seconds_count") == 4


# -- testing.md ---------------------------------------------------------------------------


def test_testing_samples_pass_as_a_pytest_run_of_their_own(tmp_path: Path) -> None:
    # Run as a user runs them, in a project of their own: none of this project's pytest
    # configuration (asyncio_mode = "auto", its conftest) applies, only the installed plugin.
    project = fresh_project(tmp_path, *PYTEST_SAMPLES)
    result = subprocess.run(  # noqa: S603 - our own interpreter, our own files
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *PYTEST_SAMPLES],
        cwd=project,
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b6 passed\b", result.stdout), result.stdout
    # No configuration file found: pytest-asyncio in its default, strict, mode.
    assert re.search(rf"^rootdir: {re.escape(str(project))}$", result.stdout, re.MULTILINE)


# -- every script, as a user runs it ------------------------------------------------------


def fresh_project(tmp_path: Path, *samples: str) -> Path:
    """A project of a user's own, holding only copies of ``samples``: no pyproject.toml,
    conftest.py or package of this project's, so that nothing of ours applies but the
    installed package."""
    project = tmp_path / "project"
    project.mkdir()
    for name in samples:
        shutil.copy(EXAMPLES / name, project / name)
    return project


def user_environment(**variables: str) -> dict[str, str]:
    """This process's environment without the client's variables and this project's pytest
    and import settings, with ``variables``."""
    environment = without_client_variables(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTHONPATH"):
        environment.pop(name, None)
    return {**environment, **variables}


@attrs.frozen
class Script:
    """How a sample is run as a script: its arguments, its standard input, and what must be
    true of its output, from the emulator's channels of ``sizes``."""

    sizes: tuple[int, ...] = (120,)
    arguments: Callable[[list[tuple[str, str]], Path], list[str]] = lambda channels, _: [
        *channels[0]
    ]
    stdin: Callable[[list[tuple[str, str]]], str] = lambda _: ""
    exit_code: int = 0
    expected: Callable[[FlexEmulator, list[tuple[str, str]]], list[str]] = lambda _, __: []


def _all_sids(channels: list[tuple[str, str]], _: Path) -> list[str]:
    return [sid for channel in channels for sid in channel]


def _channel_list(channels: list[tuple[str, str]], project: Path) -> list[str]:
    flex_participants.write_channel_list(
        project / "channels.csv", [*channels, (MISSING_KD, MISSING_UO)]
    )
    return ["channels.csv", "participants.jsonl"]


# Every sample with a ``__main__`` part, but the web apps and the Prometheus exporter, which
# serve until stopped (the apps are tested above through their factories), and the arq
# samples, which run under an arq worker below.
SCRIPTS: dict[str, Script] = {
    "quickstart.py": Script(
        expected=lambda emulator, channels: [
            p["sid"] for p in emulator.participants_of(*channels[0])
        ]
    ),
    "try_emulator.py": Script(
        sizes=(),
        arguments=lambda _, __: [],
        expected=lambda _, __: ["120 participants in 3 requests"],
    ),
    "stream_pages.py": Script(sizes=(450,), expected=lambda _, __: ["page 2: 50 participants"]),
    "per_call.py": Script(sizes=(70,), expected=lambda _, __: ["glance: 10", "export: 70"]),
    "errors.py": Script(sizes=(70,), expected=lambda _, __: ["participants: 70"]),
    "observe_hooks.py": Script(expected=lambda _, __: ["participants: 120 in 3 pages"]),
    "observe_logging.py": Script(expected=lambda _, __: ["participants: 120"]),
    "observe_otel.py": Script(expected=lambda _, __: ["participants: 120"]),
    "resume.py": Script(
        sizes=(130,),
        arguments=lambda channels, _: [*channels[0], "cursor"],
        expected=lambda emulator, channels: [
            p["sid"] for p in emulator.participants_of(*channels[0])
        ],
    ),
    "batch_export.py": Script(
        sizes=(0, 3, 75),
        arguments=_channel_list,
        exit_code=1,  # the channel the emulator does not know
        expected=lambda _, __: ["4 channels, 1 failed"],
    ),
    "worker.py": Script(
        sizes=(5, 50),
        arguments=lambda _, __: [],
        stdin=lambda channels: (
            "interaction_sid,channel_sid\n" + "".join(f"{kd},{uo}\n" for kd, uo in channels)
        ),
        expected=lambda emulator, channels: [
            f"{uo} {dict(types_of(emulator.participants_of(kd, uo)))}" for kd, uo in channels
        ],
    ),
    "shared_budget.py": Script(
        sizes=(3, 75),
        arguments=_all_sids,
        expected=lambda emulator, channels: [
            f"{uo} {len(emulator.participants_of(kd, uo))}" for kd, uo in channels
        ],
    ),
    "rate_budget.py": Script(
        sizes=(),
        arguments=lambda _, __: ["10"],
        expected=lambda _, __: [
            "1200 participants of 60 channels",
            "0 requests answered 429; the rate is now 10.0 /s",
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
async def test_the_sample_runs_as_a_script_in_a_project_of_its_own(
    name: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    script = SCRIPTS[name]
    project = fresh_project(tmp_path, name)
    async with FlexEmulator(seed=2024) as emulator:
        channels = [emulator.add_channel(participants=n) for n in script.sizes]
        environment = user_environment(
            TWILIO_ACCOUNT_SID=emulator.account_sid,
            TWILIO_AUTH_TOKEN=emulator.auth_token,
            FLEX_PARTICIPANTS_BASE_URL=emulator.base_url,
            REDIS_URL=redis_server.url(SAMPLES_DB),
        )
        code, out, err = await run_in(
            project,
            name,
            *script.arguments(channels, project),
            env=environment,
            stdin=script.stdin(channels),
        )
        expected = script.expected(emulator, channels)

    assert code == script.exit_code, err
    printed = out.splitlines()
    missing = [line for line in expected if not any(p.startswith(line) for p in printed)]
    assert missing == [], out + err


def test_every_script_sample_is_run_as_a_script() -> None:
    with_main = {p.name for p in EXAMPLES.glob("*.py") if "__main__" in p.read_text()}
    served = {"web_app_aiohttp.py", "observe_prometheus.py"}
    assert with_main - served - set(ARQ_SAMPLES) == set(SCRIPTS)


# -- the pages themselves -----------------------------------------------------------------


# A Python block written into a page, rather than included from docs/examples/: a fence
# (```, ~~~ or MyST's :::) in a Python lexer, with or without a code directive, an
# reStructuredText code directive, or a doctest prompt.
_PYTHON_LEXER = r"(?:python3?|py3?|pycon|ipython3?|python-console)\b"
_INLINE_PYTHON = re.compile(
    rf"^[ \t>]*(?:`{{3,}}|~{{3,}}|:{{3,}})[ \t]*"
    rf"(?:\{{(?:code-block|code|sourcecode|code-cell)\}}[ \t]*)?{_PYTHON_LEXER}"
    rf"|^[ \t]*\.\.[ \t]+(?:code-block|code|sourcecode|ipython|doctest)::(?:[ \t]*{_PYTHON_LEXER}|[ \t]*$)"
    r"|^[ \t>]*>>>[ \t]",
    re.MULTILINE | re.IGNORECASE,
)


def pages() -> list[Path]:
    return sorted(page for page in DOCS.rglob("*.md") if "_build" not in page.parts)


def test_no_page_holds_a_python_block_that_no_test_runs() -> None:
    inline = []
    for page in pages():
        text = page.read_text()
        for found in _INLINE_PYTHON.finditer(text):
            line = text.count("\n", 0, found.start()) + 1
            inline.append(f"{page.relative_to(ROOT)}:{line}: {found[0].strip()}")
    assert inline == [], (
        "Python written into a page is run by no test: move it to a sample in docs/examples/, "
        "include it with literalinclude, and run it here"
    )


def test_the_check_for_inline_python_finds_each_kind_of_block() -> None:
    caught = [
        "```python\n",
        "~~~py\n",
        "````{code-block} python\n",
        ":::{code} python3\n",
        "```pycon\n",
        "  .. code-block:: python\n",
        ".. doctest::\n",
        ">>> client = FlexClient()\n",
    ]
    passed = [
        "```{literalinclude} examples/quickstart.py\n:language: python\n```\n",
        "```console\n$ python3 -m flex_participants demo\n```\n",
        "```text\n```\n",
        "```{eval-rst}\n.. autoclass:: FlexClient\n```\n",
    ]
    assert [bool(_INLINE_PYTHON.search(block)) for block in caught] == [True] * len(caught)
    assert [bool(_INLINE_PYTHON.search(block)) for block in passed] == [False] * len(passed)


def test_every_sample_is_shown_on_a_page_and_every_included_file_exists() -> None:
    included: set[str] = set()
    for page in pages():
        for target in re.findall(
            r"^[ \t]*[`~:]{3,}\{literalinclude\}\s+(\S+)", page.read_text(), re.MULTILINE
        ):
            path = (page.parent / target).resolve()
            assert path.is_file(), f"{page.name} includes a missing {target}"
            if path.suffix == ".py":
                assert path.parent == EXAMPLES.resolve(), f"{page.name} includes {target}"
            included.add(path.name)
    assert included == {path.name for path in EXAMPLES.glob("*.py")}


def test_every_sample_is_run_by_a_test_here() -> None:
    loaded = {f"{name}.py" for name in re.findall(r'\bload\("(\w+)"\)', Path(__file__).read_text())}
    assert loaded | set(PYTEST_SAMPLES) | set(COMPILED_ONLY) == {
        path.name for path in EXAMPLES.glob("*.py")
    }


def documented_on_the_api_page() -> set[str]:
    api = (DOCS / "api.md").read_text()
    return set(re.findall(r"^\.\. (?:auto\w+|data):: (\w+)", api, flags=re.MULTILINE))


def test_api_page_documents_every_public_name() -> None:
    documented = documented_on_the_api_page()
    assert set(flex_participants.__all__) <= documented
    assert set(flex_participants.emulator.__all__) <= documented


@pytest.mark.parametrize("extra", ["flex_participants.redis", "flex_participants.otel"])
def test_api_page_documents_every_public_name_of_the_optional_parts(extra: str) -> None:
    # Skipped where the extra is not installed: the subpackage does not import without it.
    module = pytest.importorskip(extra, exc_type=ImportError)
    assert set(module.__all__) <= documented_on_the_api_page()


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_samples_are_ruff_clean() -> None:
    # The lint session checks the package and the tests; the samples are checked here.
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(  # noqa: S603 - ruff, on our own files
            [sys.executable, "-m", "ruff", *command, str(EXAMPLES)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_test_the_guarantees_page_names_exists() -> None:
    named = re.findall(r"`tests/(\w+\.py)::(\w+)`", (DOCS / "guarantees.md").read_text())
    assert len(named) > 30
    missing = [
        f"tests/{module}::{name}"
        for module, name in named
        if not re.search(
            rf"^(?:async def|def|class) {name}\b|^{name} = ",
            (ROOT / "tests" / module).read_text(),
            re.MULTILINE,
        )
    ]
    assert missing == []
