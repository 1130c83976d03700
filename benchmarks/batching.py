"""Batching: many concurrent single-text embedding calls when every HTTP call costs the same.

The simulator answers every embeddings request ``LATENCY`` (50 ms) late,
however many inputs it carries, so one HTTP call of 64 inputs costs what
one of 1 input does.  ``--calls`` (default 1,000) asyncio tasks each make one
single-text embedding call (``text-embedding-3-small``) at the same moment,
on one event loop of this process (uvloop when installed), by four
contenders:

* ``ours_batching_on``: ``openai_api`` with ``batching_enabled=True``,
  ``max_batch_size=64``, ``batch_timeout=0.02``,
  ``max_concurrent_requests=32`` and every other feature on (queue,
  breaker, retries, stats); ``await client.aembeddings(...)``;
* ``ours_batching_off``: the same with ``batching_enabled=False``;
* ``aiohttp``: raw ``aiohttp.ClientSession``, one POST per call, at most 32
  at once (a semaphore and a 32-connection pool), JSON decoded;
* ``openai_sdk`` (when ``openai`` is installed, else skipped with a note):
  ``openai.AsyncOpenAI(max_retries=2)`` with its own default connection
  pool, ``await client.embeddings.create(...)``.

None of the peers batches.  Contenders alternate A B C D ... for
``--rounds``; each run builds its client, warms it up, then the simulator's
counters are reset (``POST /_admin/reset`` keeping the scenario) and the
measured calls go out.  What the simulator saw afterwards
(``GET /_admin/counters``) gives the HTTP requests, the mean inputs per
HTTP call and the peak number of requests in flight at the server.

Printed per contender (medians over the rounds; failures summed): wall
seconds, calls/s, HTTP requests, inputs per HTTP call, p50/p99 latency of a
call as its caller saw it, client CPU per call, server peak concurrency and
failed calls.  More than 1% failed calls for any contender exits 1.

    python benchmarks/batching.py [--calls 1000] [--rounds 3] [--contenders ...]
                                  [--no-pin] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import version
from typing import Any

import aiohttp
from procs import (
    ADMIN_HEADERS,
    FAILURE_TOLERANCE,
    Batch,
    Meter,
    can_pin,
    drive_tasks,
    our_metadata,
    pinned_simulator,
    pinning_note,
    run_in_new_loop,
    run_script,
)

SCENARIO = "batching"
DEFAULT_CALLS = 1000
QUICK_CALLS = 200
DEFAULT_ROUNDS = 3
WARMUP_CALLS = 64
LATENCY = 0.05  # seconds the simulator spends on every HTTP call, whatever it carries
CONNECTIONS = 32  # max_concurrent_requests of ours, the semaphore of raw aiohttp
MAX_BATCH_SIZE = 64
BATCH_TIMEOUT = 0.02
RETRIES = 2
RUN_CAP = 120.0  # seconds: calls still running then are cancelled and counted as failed

MODEL = "text-embedding-3-small"
TEXT = "a short passage to embed"
API_KEY = "sk-bench"
BODY = json.dumps({"model": MODEL, "input": TEXT}).encode()
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

CONTENDERS = ("ours_batching_on", "ours_batching_off", "aiohttp", "openai_sdk")
OPTIONAL = {"openai_sdk": "openai"}  # contender: the package it needs

Call = Callable[[], Awaitable[bool]]


# ---------------------------------------------------------------- contenders
#
# Each contender is an async context manager yielding ``call()``: one
# single-text embedding call, True when the reply holds exactly one vector.


def _ours(batching: bool) -> Callable[[str, int], Any]:
    @contextlib.asynccontextmanager
    async def contender(url: str, calls: int) -> AsyncIterator[Call]:
        from ipfs_accelerate_py.api_backends import openai_api

        metadata = our_metadata(url, API_KEY, CONNECTIONS)
        metadata.update(
            batching_enabled=batching,
            max_batch_size=MAX_BATCH_SIZE,
            batch_timeout=BATCH_TIMEOUT,
            queue_size=max(metadata["queue_size"], calls),
        )
        client = openai_api(metadata=metadata)
        try:

            async def call() -> bool:
                return len((await client.aembeddings(MODEL, TEXT))["data"]) == 1

            yield call
        finally:
            await client.aclose()

    return contender


@contextlib.asynccontextmanager
async def aiohttp_contender(url: str, calls: int) -> AsyncIterator[Call]:
    gate = asyncio.Semaphore(CONNECTIONS)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call() -> bool:
            async with (
                gate,
                session.post(url + "/embeddings", data=BODY, headers=HEADERS) as response,
            ):
                response.raise_for_status()
                return len(json.loads(await response.read())["data"]) == 1

        yield call


@contextlib.asynccontextmanager
async def openai_sdk_contender(url: str, calls: int) -> AsyncIterator[Call]:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key=API_KEY, max_retries=RETRIES)
    try:

        async def call() -> bool:
            return len((await client.embeddings.create(model=MODEL, input=TEXT)).data) == 1

        yield call
    finally:
        await client.close()


FACTORIES = {
    "ours_batching_on": _ours(batching=True),
    "ours_batching_off": _ours(batching=False),
    "aiohttp": aiohttp_contender,
    "openai_sdk": openai_sdk_contender,
}


def available(name: str) -> bool:
    package = OPTIONAL.get(name)
    return package is None or importlib.util.find_spec(package) is not None


# ------------------------------------------------------------ the simulator


def admin(url: str, method: str, name: str, body: Any = None) -> dict:
    """``{method} /_admin/{name}`` of the simulator whose API is at ``url`` (…/v1)."""
    root = url[: -len("/v1")] if url.endswith("/v1") else url
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{root}/_admin/{name}", data=data, method=method, headers=ADMIN_HEADERS
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def server_figures(counters: dict) -> dict:
    """HTTP requests, mean inputs per embeddings call and peak concurrency from a counters snapshot."""
    inputs = counters.get("embedding_inputs", {})
    return {
        "http_requests": counters["requests_total"],
        "inputs_per_http_call": inputs.get("total", 0) / max(1, inputs.get("calls", 0)),
        "server_peak_concurrency": counters.get("peak_concurrency", 0),
    }


# ------------------------------------------------------------------- running


async def run_one(name: str, url: str, calls: int, server_pid: int) -> tuple:
    """One run of one contender: a fresh client, a warm-up, the counters
    zeroed, then ``calls`` calls at once.  Returns the Batch and what the
    simulator saw of the measured calls."""
    async with FACTORIES[name](url, calls) as call:
        warmup = min(WARMUP_CALLS, calls)
        await drive_tasks(call, warmup, warmup, Meter(server_pid), RUN_CAP)
        await asyncio.to_thread(admin, url, "POST", "reset", {"scenario": False})
        batch = await drive_tasks(call, calls, calls, Meter(server_pid), RUN_CAP)
        seen = await asyncio.to_thread(admin, url, "GET", "counters")
    return batch, server_figures(seen)


def figures(batch: Batch, seen: dict) -> dict:
    fig = batch.figures()
    return {
        "wall_s": fig["wall_s"],
        "calls_per_s": (batch.requests - batch.failed) / fig["wall_s"],
        **seen,
        "p50_ms": fig["p50_ms"],
        "p99_ms": fig["p99_ms"],
        "client_cpu_ms_per_call": fig["client_cpu_ms_per_request"],
        "server_cpu_utilisation": fig["server_cpu_utilisation"],
        "failed": batch.failed,
        "failure_reasons": dict(batch.failures),
        "calls": batch.requests,
    }


async def run_all(url: str, server_pid: int, contenders: tuple, args: argparse.Namespace) -> dict:
    """``{name: [figures of each round]}``, contenders alternating within each round."""
    admin(url, "POST", "config", {"latency": LATENCY})
    runs: dict = {name: [] for name in contenders}
    for round_no in range(args.rounds):
        for name in contenders:
            fig = figures(*await run_one(name, url, args.calls, server_pid))
            runs[name].append(fig)
            failed = f"  FAILED {fig['failed']}: {fig['failure_reasons']}" if fig["failed"] else ""
            print(
                f"  round {round_no + 1}/{args.rounds} {name:<18}{fig['calls_per_s']:>8,.0f} calls/s"
                f"  {fig['http_requests']:>5} HTTP  wall {fig['wall_s']:.2f} s"
                f"  server cpu {fig['server_cpu_utilisation']:4.0%}{failed}",
                flush=True,
            )
    return runs


def preload(contenders: tuple) -> None:
    """Import every contender's package before the first run, then freeze the
    GC heap so that no contender's collections walk another's imports."""
    for name in contenders:
        if name in OPTIONAL:
            importlib.import_module(OPTIONAL[name])
    importlib.import_module("ipfs_accelerate_py.api_backends")
    gc.collect()
    gc.freeze()


# ----------------------------------------------------------------- reporting

COLUMNS = (  # (column title, figure key)
    ("wall s", "wall_s"),
    ("calls/s", "calls_per_s"),
    ("HTTP requests", "http_requests"),
    ("inputs/HTTP call", "inputs_per_http_call"),
    ("p50 ms", "p50_ms"),
    ("p99 ms", "p99_ms"),
    ("client cpu ms/call", "client_cpu_ms_per_call"),
    ("server peak in flight", "server_peak_concurrency"),
    ("failed", "failed"),
)


def medians(runs: list) -> dict:
    """The median of each figure over the rounds; failures summed."""
    out = {key: statistics.median(r[key] for r in runs) for _, key in COLUMNS}
    out["failed"] = sum(r["failed"] for r in runs)
    out["calls"] = sum(r["calls"] for r in runs)
    return out


def findings(summary: dict, calls: int) -> list:
    """Sentences the medians show."""
    out = []
    on, off = summary.get("ours_batching_on"), summary.get("ours_batching_off")
    if on and off:
        out.append(
            f"batching on: {on['calls_per_s'] / off['calls_per_s']:.1f}x the calls/s of batching off, "
            f"with {off['http_requests'] / max(1, on['http_requests']):.1f}x fewer HTTP requests "
            f"({on['http_requests']:g} against {off['http_requests']:g}, "
            f"{on['inputs_per_http_call']:.1f} inputs per call against {off['inputs_per_http_call']:.1f})."
        )
    bound = -(-calls // CONNECTIONS) * LATENCY  # waves of 32 one-input calls, 50 ms each
    for name in ("ours_batching_off", "aiohttp"):
        if name in summary:
            out.append(
                f"{name}: {summary[name]['wall_s']:.2f} s for {calls} calls, against {bound:.2f} s "
                f"for {-(-calls // CONNECTIONS)} waves of {CONNECTIONS} one-input calls at "
                f"{LATENCY * 1e3:.0f} ms each."
            )
    for peer in ("aiohttp", "openai_sdk"):
        if on and peer in summary:
            out.append(
                f"batching on: {on['calls_per_s'] / summary[peer]['calls_per_s']:.1f}x the calls/s "
                f"of {peer}, which sent {summary[peer]['http_requests']:g} HTTP requests "
                f"(peak {summary[peer]['server_peak_concurrency']:g} in flight at the server)."
            )
    if on:
        out.append(
            f"batching on: p99 latency of a call {on['p99_ms']:.0f} ms, against "
            + ", ".join(
                f"{n} {m['p99_ms']:.0f} ms" for n, m in summary.items() if n != "ours_batching_on"
            )
            + "."
        )
    return out


def print_table(summary: dict) -> None:
    print(
        f"\nmedians over the rounds (failed: summed)\n{'contender':<19}"
        + "".join(f"{title:>{max(9, len(title) + 2)}}" for title, _ in COLUMNS)
    )
    for name, m in summary.items():
        cells = []
        for title, key in COLUMNS:
            width = max(9, len(title) + 2)
            value = m[key]
            cells.append(
                f"{value:>{width},.0f}"
                if key in ("calls_per_s", "http_requests", "failed", "server_peak_concurrency")
                else f"{value:>{width}.2f}"
            )
        print(f"{name:<19}" + "".join(cells))


def document(
    args: argparse.Namespace, pin: bool, contenders: tuple, skipped: list, runs: dict, summary: dict
) -> dict:
    versions = {"python": platform.python_version(), "aiohttp": aiohttp.__version__}
    versions.update({OPTIONAL[c]: version(OPTIONAL[c]) for c in contenders if c in OPTIONAL})
    return {
        "scenario": SCENARIO,
        "title": f"{args.calls:,} concurrent single-text embedding calls, {LATENCY * 1e3:.0f} ms per HTTP call",
        "description": (
            f"{args.calls:,} asyncio tasks each make one single-text embeddings call ({MODEL}) at once "
            f"against the simulator, which spends {LATENCY * 1e3:.0f} ms on every HTTP call whatever it "
            f"carries. Ours coalesces the calls into batches of up to {MAX_BATCH_SIZE} when batching is on "
            f"({CONNECTIONS} HTTP calls in flight at most); raw aiohttp and the openai SDK send one HTTP "
            "call per embedding call. HTTP requests and inputs per call are the simulator's own counts; "
            f"medians over {args.rounds} round(s), contenders alternating."
        ),
        "config": {
            "calls": args.calls,
            "rounds": args.rounds,
            "latency_s": LATENCY,
            "model": MODEL,
            "max_concurrent_requests": CONNECTIONS,
            "aiohttp_connections": CONNECTIONS,
            "max_batch_size": MAX_BATCH_SIZE,
            "batch_timeout_s": BATCH_TIMEOUT,
            "openai_sdk_max_retries": RETRIES,
            "warmup_calls": WARMUP_CALLS,
            "pinned": pin,
            "quick": args.quick,
            "contenders": list(contenders),
            "skipped": skipped,
            "cpus": os.cpu_count(),
            **versions,
            "per_round": {
                name: [
                    {k: r[k] for k in ("calls_per_s", "http_requests", "wall_s", "failed")}
                    for r in rs
                ]
                for name, rs in runs.items()
            },
        },
        "tables": [
            {
                "title": "Concurrent single-text embedding calls (medians over the rounds)",
                "columns": ["contender", *(title for title, _ in COLUMNS)],
                "rows": [[name, *(m[key] for _, key in COLUMNS)] for name, m in summary.items()],
            }
        ],
        "plots": [
            {
                "title": f"{args.calls:,} concurrent embedding calls, {LATENCY * 1e3:.0f} ms per HTTP call",
                "kind": "bar",
                "xlabel": "contender",
                "ylabel": "calls/s",
                "series": {"calls/s": [[name, m["calls_per_s"]] for name, m in summary.items()]},
            }
        ],
        "findings": findings(summary, args.calls),
    }


# ---------------------------------------------------------------------- main


def parse_args(argv: list | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="concurrent calls per run")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="A B C D rounds")
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin server and client to cores"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_CALLS} calls, 1 round (seconds)"
    )
    parser.add_argument("--json", metavar="PATH", help="write the figures to PATH")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.rounds = QUICK_CALLS, 1
    if min(args.calls, args.rounds) < 1:
        parser.error("--calls and --rounds must be >= 1")
    args.contenders = tuple(c for c in CONTENDERS if c in args.contenders)  # the documented order
    return args


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    contenders = tuple(c for c in args.contenders if available(c))
    skipped = [c for c in args.contenders if c not in contenders]
    pin = can_pin(args.no_pin)
    with pinned_simulator(pin) as (proc, url):  # before any thread of ours exists
        print(
            f"simulator {url} (pid {proc.pid}); pinned: {pinning_note(pin)}; {args.calls} calls at once, "
            f"{args.rounds} round(s), latency {LATENCY * 1e3:.0f} ms per HTTP call",
            flush=True,
        )
        for name in skipped:
            print(
                f"skipped {name}: {OPTIONAL[name]} is not installed (pip install {OPTIONAL[name]})",
                flush=True,
            )
        preload(contenders)
        runs = run_in_new_loop(run_all(url, proc.pid, contenders, args))
    summary = {name: medians(rs) for name, rs in runs.items()}
    print_table(summary)
    result = document(args, pin, contenders, skipped, runs, summary)
    print("\n" + "\n".join(f"- {line}" for line in result["findings"]))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    bad = [
        (n, m["failed"], m["calls"])
        for n, m in summary.items()
        if m["failed"] > FAILURE_TOLERANCE * m["calls"]
    ]
    for name, failed, total in bad:
        print(f"{name}: {failed} of {total} calls failed; its figures mean little", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    run_script(main)
