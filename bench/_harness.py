"""The benchmark's command line: run the scenarios, print the table, write the record and the docs page.

``--quick`` runs every scenario at a tiny size, once, and checks only that every system
returned every participant exactly once: it is the smoke run for CI and asserts nothing
about speed. The exit status is 1 if any system lost or repeated a participant, else 0,
whatever the targets say (the table says that).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import sys
from collections.abc import Sequence
from pathlib import Path

from ._emulator import ROOT
from ._report import machine, markdown_table, plot, results_section, update_page, write_json
from ._scenarios import FULL, QUICK, SCENARIOS, run_scenarios
from ._spawner import Spawner
from ._systems import import_all

PAGE = ROOT / "docs" / "performance.md"
IMAGE = ROOT / "docs" / "_static" / "performance.png"

PAGE_TEMPLATE = """\
# Performance

This page is written by the benchmark in `bench/`: it runs this client, the official
[`twilio`](https://pypi.org/project/twilio/) package (its asyncio client) and a minimal
hand-written loop side by side against the {doc}`emulator <testing>`, and checks each
against a bound computed from what the server did.

## Rerun it

```console
$ nox -s bench              # the full run: rewrites the results below and the plot
$ nox -s bench -- --quick   # a tiny run that checks only that nothing is lost
$ python -m bench --help    # from the repository's root, in an environment with the extras
```

`python -m bench --repeat 9 --scenario cpu` runs one scenario with more repetitions;
`--profile` writes a profile of the client in the cpu scenario (needs `pyinstrument`). Every
run also writes its full record (every run of every system, the machine) as JSON under
`bench/results/`.

## Method

- **The three systems.** `sdk`: `FlexClient.participants` and
  `FlexClient.participants_for_channels`. `twilio`: `twilio.rest.Client` with
  `AsyncTwilioHttpClient`, `client.flex_api.v1.interaction(kd).channels(uo).participants
  .stream_async(page_size=...)`, and for many channels one task per channel under an
  `asyncio.Semaphore(20)`. `reference`: one aiohttp session, a semaphore, orjson, plain dicts,
  the next page requested while the current one is consumed: about the least code that does
  the job, and so the limit of what hand-written Python reaches.
- **The server.** The emulator runs in a process of its own, so it does not share the client's
  CPU. Each scenario starts a fresh one with the data and latency it needs. Bounds are computed
  from the service time per request it measured in that very run, S (its
  `service_time / requests`, latency included), not from the nominal latency.
- **Hygiene.** Every system is imported before anything is timed and run once untimed; each
  timed run starts with `gc.collect()` and `gc.freeze()`; the systems run in turn (A B C A B
  C ...) so that a noisy moment hits them all; every run's participant SIDs are compared with
  the dataset, and a run that lost or repeated any reports no time. Runs whose figure is
  memory, or that must not import orjson, run in a fresh process each.
- **Scenarios.**
  - *prefetch*: one channel of 20 pages of 50, 20 ms of server latency, and a consumer that
    spends 20 ms on each page. Bound: pages x max(S, consume) + min(S, consume): the first
    page cannot be overlapped with anything, every later one can. Target: within 3 %.
  - *batch*: 200 channels of 3 pages, 20 ms latency, 20 requests in flight. Bound:
    max(sum of service times / 20, 3 x S). Target: within 10 %, and no slower than either
    peer in the same repetition.
  - *cpu*: one channel of 100,000 participants in pages of 1,000, no latency; the client
    process's CPU time (`time.process_time()`) per participant. Target: at most 0.6 x twilio's.
    The client runs twice: with orjson, and in a process where orjson cannot be imported, on
    the standard library's `json`.
  - *memory*: peak RSS (`ru_maxrss`) of a fresh process streaming one channel of 1,000,000
    participants, against one streaming 10,000. Target: at most 30 MB more.
  - *scale*: 20,000 channels of 0 to 9 participants (a page each) through
    `participants_for_channels`, read lazily from a file, against 2,000: the most tasks alive
    at once and the peak RSS must not grow with the input; throughput next to the reference's.

## Results

{results}

The machine is shared and noisy: compare ratios within one run rather than absolute figures
across runs.

## What the design does for throughput

Described in {doc}`streaming`, {doc}`batch` and {doc}`errors`:

- one connection pool per client, reused across every request;
- the next page of a stream requested while the current one is being consumed (`prefetch`);
- many channels fetched concurrently under one adaptive concurrency limit;
- JSON decoded with orjson when the `speedups` extra is installed.
"""


def main(argv: Sequence[str] | None = None, *, spawner: Spawner) -> int:
    """Parse ``argv``, run, report; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, once: correctness only")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 5)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="run only these (repeatable); default: all",
    )
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--no-docs", action="store_true", help="do not rewrite docs/performance.md and the plot"
    )
    parser.add_argument("--profile", action="store_true", help="profile the SDK on the cpu run")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 5)
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    names = args.scenario or list(SCENARIOS)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")

    if args.profile:
        from ._profile import profile_cpu

        output = args.results_dir / f"profile-cpu-{stamp}.txt"
        text = asyncio.run(profile_cpu(sizes))
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        print(text)
        print(f"written to {output}", file=sys.stderr)
        return 0

    import_all()
    info = machine()
    results = asyncio.run(
        run_scenarios(
            names, sizes, repeat, spawner, lambda line: print(line, file=sys.stderr, flush=True)
        )
    )
    if args.quick:
        # A smoke run says whether every system returned everything, and nothing about speed.
        for result in results:
            for row in result.rows:
                missing = any(f"/{row.system} run" in line for line in result.lost)
                row.ratio, row.target = "", ""
                row.verdict = "LOST PARTICIPANTS" if missing else "all returned"
    table = markdown_table(results)
    print(table)
    lost = [line for result in results for line in result.lost]
    for line in lost:
        print(f"LOST: {line}", file=sys.stderr)
    record = {
        "kind": "quick" if args.quick else "full",
        "machine": info,
        "repeat": repeat,
        "sizes": dataclasses.asdict(sizes),
        "scenarios": [result.as_dict() for result in results],
        "lost": lost,
    }
    path = args.results_dir / f"{record['kind']}-{stamp}.json"
    write_json(path, record)
    print(f"record written to {path}", file=sys.stderr)
    if not args.quick and not args.no_docs:
        plot(results, IMAGE)
        section = results_section(results, info, repeat, "_static/performance.png")
        update_page(PAGE, section, PAGE_TEMPLATE)
        print(f"{PAGE.relative_to(ROOT)} and {IMAGE.relative_to(ROOT)} written", file=sys.stderr)
    return 1 if lost else 0
