"""Priority under saturation: how long an urgent (HIGH) request waits behind a full queue of LOW ones.

The simulator answers every chat request after 20 ms (``latency=0.02``, set
through ``POST /_admin/config``).  Each contender may have at most 8 requests
in flight, so it serves at most ~400 requests/s.  A run submits a backlog of
``--low`` LOW chat requests at once (2,000; quick: 300), then, while that
backlog is still queued, one HIGH request every 20 ms (``--high``: 100;
quick: 20).  Every request is timed on the caller's side, from just before
it is submitted to the moment its ``await`` returns; the figures are pooled
over the rounds, per class.  Contenders, on one event loop of this process
(uvloop when installed), alternating A B C A B C ... for ``--rounds``:

* ``ours``: ``openai_api`` with ``max_concurrent_requests=8``, a
  ``queue_size`` that holds the whole backlog, batching off and every other
  feature on; ``client.aqueue_with_priority(info, PRIORITY_LOW or
  PRIORITY_HIGH)``, awaited.  Its own ``get_stats()["queue_wait"]`` (both
  classes together: submission to first attempt) is reported beside;
* ``ours_no_priority``: the same client and the same two streams of requests,
  every one sent at ``PRIORITY_NORMAL``: what HIGH buys;
* ``litellm_router``: ``litellm.Router`` over one deployment at the
  simulator with ``max_parallel_requests=8`` and ``enable_pre_call_checks``
  (so that a deployment with every slot taken is not "healthy" and the
  scheduler holds requests back), ``polling_interval=0.03`` (its docs'
  example), ``num_retries=2``, ``await router.acompletion(...,
  priority=0 | 2)``.  Its scheduler polls once per waiting request per
  interval, which costs CPU in proportion to the backlog, so its backlog is
  capped at ``--peer-low`` (500; quick: 100).  Optional: skipped with a note
  when ``litellm`` is not installed; left out of ``--quick`` unless named in
  ``--contenders`` (its import alone takes 3 to 14 s here).

Printed and written to ``--json`` (the common shape of ``python -m
benchmarks``): per contender and class, requests, failed, p50/p99/max
latency; our queue wait; each run's throughput and CPU shares; and
``low_after_last_high``, the LOW requests that completed after the last HIGH
one was submitted (positive: the backlog lasted the whole HIGH stream, as
the scenario needs).  Exit 1 when ``ours`` failed any request or its backlog
ran dry before the last HIGH request was sent.

    python benchmarks/priority.py [--rounds 3] [--low 2000] [--high 100] [--peer-low 500]
                                  [--contenders ...] [--no-pin] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import version
from typing import NamedTuple

from procs import (
    ADMIN_HEADERS,
    Meter,
    can_pin,
    close_litellm,
    failure_reason,
    keep_litellm_offline,
    our_metadata,
    percentile,
    pinned_simulator,
    pinning_note,
    quiet_litellm,
    run_in_new_loop,
    run_script,
)

keep_litellm_offline()

SCENARIO = "priority"
LATENCY = 0.02  # seconds the simulator waits before each answer
CONCURRENCY = 8  # requests in flight at most, every contender
DEFAULT_LOW = 2000
DEFAULT_HIGH = 100
DEFAULT_PEER_LOW = 500  # LiteLLM's scheduler polls per waiting request: a smaller backlog
DEFAULT_ROUNDS = 3
QUICK_LOW, QUICK_HIGH, QUICK_PEER_LOW = 300, 20, 100
HIGH_INTERVAL = 0.02  # seconds between two HIGH arrivals
HIGH_START = 0.1  # seconds after the backlog was submitted that the first HIGH arrives
WARMUP = 2 * CONCURRENCY  # requests before each measured run (connections opened)
QUEUE_HEADROOM = 256  # our queue_size = backlog + HIGH + this
RUN_CAP = 300.0  # seconds: a run still going then is cancelled, its rest counted as failed
RETRIES = 2
LITELLM_POLLING_INTERVAL = 0.03

MODEL = "gpt-4o-mini"
LITELLM_MODEL = "openai/gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello"}]
API_KEY = "sk-bench"

HIGH, LOW = "HIGH", "LOW"  # the two classes of request: urgent ones and the backlog
CONTENDERS = ("ours", "ours_no_priority", "litellm_router")
OPTIONAL = {"litellm_router": "litellm"}  # contender: the package it needs
PEERS = ("litellm_router",)  # their backlog is --peer-low
QUICK_CONTENDERS = ("ours", "ours_no_priority")  # LiteLLM's import alone takes 3-14 s here
SENT_AS = {  # contender: {class: the priority it is sent at}
    "ours": {HIGH: "PRIORITY_HIGH (0)", LOW: "PRIORITY_LOW (2)"},
    "ours_no_priority": {HIGH: "PRIORITY_NORMAL (1)", LOW: "PRIORITY_NORMAL (1)"},
    "litellm_router": {HIGH: "priority=0", LOW: "priority=2"},
}


# ---------------------------------------------------------------- contenders
#
# Each contender is an async context manager yielding a Client: ``send(cls)``
# submits one request of class HIGH or LOW and completes with its reply.


class Client(NamedTuple):
    send: Callable[[str], Awaitable[bool]]  # True when the reply was a chat completion
    queue_wait: Callable[[], dict] | None = (
        None  # the client's own queue-wait figures, if it keeps any
    )
    reset: Callable[[], None] | None = None  # forgets the warm-up in those figures


@contextlib.asynccontextmanager
async def ours_contender(
    url: str, backlog: int, high: int, use_priority: bool
) -> AsyncIterator[Client]:
    from ipfs_accelerate_py.api_backends import openai_api

    metadata = our_metadata(url, API_KEY, CONCURRENCY)
    metadata["queue_size"] = backlog + high + QUEUE_HEADROOM
    client = openai_api(metadata=metadata)
    levels = (
        {HIGH: client.PRIORITY_HIGH, LOW: client.PRIORITY_LOW}
        if use_priority
        else {HIGH: client.PRIORITY_NORMAL, LOW: client.PRIORITY_NORMAL}
    )
    info = {"endpoint": "chat/completions", "data": {"model": MODEL, "messages": MESSAGES}}
    try:

        async def send(cls: str) -> bool:
            return "choices" in await client.aqueue_with_priority(info, levels[cls])

        yield Client(send, lambda: client.get_stats()["queue_wait"], client.reset_stats)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def litellm_router_contender(
    url: str, backlog: int, high: int, use_priority: bool
) -> AsyncIterator[Client]:
    """One deployment limited to CONCURRENCY requests at once.  With the
    pre-call checks on, a deployment whose slots are all taken is left out of
    the healthy ones, which is what makes the scheduler hold requests back
    (without them, requests over the limit failed with RateLimitError and
    priority hardly showed)."""
    litellm = quiet_litellm()
    deployment = {
        "model_name": MODEL,
        "litellm_params": {
            "model": LITELLM_MODEL,
            "api_base": url,
            "api_key": API_KEY,
            "max_parallel_requests": CONCURRENCY,
        },
    }
    router = litellm.Router(
        model_list=[deployment],
        num_retries=RETRIES,
        enable_pre_call_checks=True,
        polling_interval=LITELLM_POLLING_INTERVAL,
        timeout=RUN_CAP,
    )
    levels = {HIGH: 0, LOW: 2}

    async def send(cls: str) -> bool:
        response = await router.acompletion(model=MODEL, messages=MESSAGES, priority=levels[cls])
        return bool(response.choices)

    yield Client(send)


FACTORIES = {
    "ours": lambda url, backlog, high: ours_contender(url, backlog, high, True),
    "ours_no_priority": lambda url, backlog, high: ours_contender(url, backlog, high, False),
    "litellm_router": lambda url, backlog, high: litellm_router_contender(url, backlog, high, True),
}


def available(name: str) -> bool:
    package = OPTIONAL.get(name)
    return package is None or importlib.util.find_spec(package) is not None


# ------------------------------------------------------------------- one run


class Run(NamedTuple):
    """One measured run: per class the latencies (s) and failures; the LOW
    requests that completed after the last HIGH one was submitted (the
    backlog lasted through the HIGH stream when positive); the run's meter."""

    latencies: dict
    failures: dict
    low_after_last_high: int
    figures: dict
    queue_wait: dict | None


async def timed(
    send: Callable[[str], Awaitable[bool]], cls: str, done: list, failures: dict
) -> None:
    """One request of ``cls``: ``(cls, latency, completed_at)`` appended to
    ``done``, or its failure counted under ``failures[cls]``."""
    started = time.perf_counter()
    try:
        reason = None if await send(cls) else "bad reply"
    except Exception as exc:  # a failed request is counted, never fatal to the run
        reason = failure_reason(exc)
    finished = time.perf_counter()
    if reason is None:
        done.append((cls, finished - started, finished))
    else:
        failures[cls][reason] = failures[cls].get(reason, 0) + 1


async def high_stream(send: Callable, count: int, done: list, failures: dict) -> tuple:
    """``count`` HIGH requests, one every HIGH_INTERVAL on a fixed schedule
    (a late one does not push the next ones back): their tasks, and when the
    last one was submitted (``perf_counter``)."""
    loop = asyncio.get_running_loop()
    start = loop.time() + HIGH_START
    tasks = []
    for n in range(count):
        await asyncio.sleep(max(0.0, start + n * HIGH_INTERVAL - loop.time()))
        tasks.append(asyncio.ensure_future(timed(send, HIGH, done, failures)))
    await asyncio.sleep(0)  # the last task submits its request
    return tasks, time.perf_counter()


async def measure(client: Client, backlog: int, high: int, meter: Meter) -> Run:
    """The backlog of LOW requests at once, then the HIGH stream; every task awaited (capped)."""
    done: list = []
    failures: dict = {HIGH: {}, LOW: {}}
    meter.start()
    tasks = [asyncio.ensure_future(timed(client.send, LOW, done, failures)) for _ in range(backlog)]
    high_tasks, last_high_sent = await high_stream(client.send, high, done, failures)
    tasks += high_tasks
    _, pending = await asyncio.wait(tasks, timeout=RUN_CAP)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    latencies = {cls: [lat for c, lat, _ in done if c == cls] for cls in (HIGH, LOW)}
    batch = meter.stop(latencies[HIGH] + latencies[LOW], {})
    expected = {HIGH: high, LOW: backlog}
    for cls in (HIGH, LOW):
        missing = expected[cls] - len(latencies[cls]) - sum(failures[cls].values())
        if missing > 0:
            failures[cls][f"unfinished after {RUN_CAP:g} s"] = missing
    after = sum(1 for c, _, at in done if c == LOW and at > last_high_sent)
    figures = {
        "wall_s": batch.wall,
        "requests_per_s": len(done) / batch.wall,
        "client_cpu_utilisation": batch.client_cpu / batch.wall,
        "server_cpu_utilisation": batch.server_cpu / batch.wall,
    }
    return Run(
        latencies, failures, after, figures, client.queue_wait() if client.queue_wait else None
    )


async def run_one(name: str, url: str, backlog: int, high: int, server_pid: int) -> Run:
    """A fresh client, a warm-up (LOW requests, CONCURRENCY at a time), the measured run."""
    async with FACTORIES[name](url, backlog, high) as client:
        for _ in range(WARMUP // CONCURRENCY):
            await asyncio.gather(*(client.send(LOW) for _ in range(CONCURRENCY)))
        if client.reset:
            client.reset()
        return await measure(client, backlog, high, Meter(server_pid))


async def run_all(url: str, server_pid: int, contenders: tuple, args: argparse.Namespace) -> dict:
    """``{contender: [Run]}``, the contenders alternating within each round."""
    runs: dict = {name: [] for name in contenders}
    try:
        for round_no in range(args.rounds):
            for name in contenders:
                backlog = args.peer_low if name in PEERS else args.low
                run = await run_one(name, url, backlog, args.high, server_pid)
                runs[name].append(run)
                print_run(name, round_no, args.rounds, run)
    finally:
        await close_litellm()
    return runs


def set_latency(url: str, latency: float) -> None:
    """The running simulator's ``latency`` scenario field, via its admin endpoint."""
    root = url[: -len("/v1")] if url.endswith("/v1") else url
    body = json.dumps({"latency": latency}).encode()
    request = urllib.request.Request(
        root + "/_admin/config", data=body, method="POST", headers=ADMIN_HEADERS
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


# ----------------------------------------------------------------- reporting


def class_figures(runs: list, cls: str) -> dict:
    """Pooled over the runs: requests, failed, p50/p99/max latency (ms)."""
    lat = sorted(x for run in runs for x in run.latencies[cls])
    failed = sum(n for run in runs for n in run.failures[cls].values())
    return {
        "requests": len(lat) + failed,
        "failed": failed,
        "p50_ms": percentile(lat, 0.50) * 1e3,
        "p99_ms": percentile(lat, 0.99) * 1e3,
        "max_ms": (lat[-1] if lat else 0.0) * 1e3,
    }


def summarise(runs: dict) -> dict:
    """``{contender: {"HIGH": figures, "LOW": figures, "low_after_last_high": [per run], ...}}``."""
    summary = {}
    for name, its_runs in runs.items():
        summary[name] = {cls: class_figures(its_runs, cls) for cls in (HIGH, LOW)}
        summary[name]["low_after_last_high"] = [run.low_after_last_high for run in its_runs]
        summary[name]["runs"] = [run.figures for run in its_runs]
        summary[name]["failure_reasons"] = [run.failures for run in its_runs]
        if its_runs and its_runs[0].queue_wait is not None:
            summary[name]["queue_wait"] = [run.queue_wait for run in its_runs]
    return summary


def print_run(name: str, round_no: int, rounds: int, run: Run) -> None:
    fig = run.figures
    lat = {cls: sorted(run.latencies[cls]) for cls in (HIGH, LOW)}
    failed = sum(n for cls in (HIGH, LOW) for n in run.failures[cls].values())
    print(
        f"  round {round_no + 1}/{rounds} {name:<17} {fig['requests_per_s']:6.0f} req/s"
        f"  HIGH p99 {percentile(lat[HIGH], 0.99) * 1e3:7.1f} ms  LOW p99 {percentile(lat[LOW], 0.99) * 1e3:7.1f} ms"
        f"  client {fig['client_cpu_utilisation']:4.0%}  server {fig['server_cpu_utilisation']:4.0%}"
        f"  LOW done after last HIGH sent {run.low_after_last_high}"
        + (f"  FAILED {failed}" if failed else ""),
        flush=True,
    )


def latency_rows(summary: dict) -> list:
    rows = []
    for name, by_class in summary.items():
        for cls in (HIGH, LOW):
            f = by_class[cls]
            rows.append(
                [
                    name,
                    cls,
                    SENT_AS[name][cls],
                    f["requests"],
                    f["failed"],
                    round(f["p50_ms"], 2),
                    round(f["p99_ms"], 2),
                    round(f["max_ms"], 2),
                ]
            )
    return rows


def queue_wait_rows(summary: dict) -> list:
    """Our own stats' queue wait (both classes together), the median over the runs."""
    rows = []
    for name, m in summary.items():
        waits = m.get("queue_wait")
        if waits:
            med = {
                k: sorted(w[k] for w in waits)[len(waits) // 2] * 1e3 for k in ("p50", "p99", "max")
            }
            rows.append(
                [
                    name,
                    sum(w["count"] for w in waits),
                    round(med["p50"], 2),
                    round(med["p99"], 2),
                    round(med["max"], 2),
                ]
            )
    return rows


def run_rows(summary: dict) -> list:
    rows = []
    for name, m in summary.items():
        runs = m["runs"]
        med = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in runs[0]}
        rows.append(
            [
                name,
                round(med["requests_per_s"], 1),
                round(100 * med["client_cpu_utilisation"], 1),
                round(100 * med["server_cpu_utilisation"], 1),
                min(m["low_after_last_high"]),
            ]
        )
    return rows


TABLE_COLUMNS = {
    "latency": [
        "contender",
        "class",
        "sent as",
        "requests",
        "failed",
        "p50 ms",
        "p99 ms",
        "max ms",
    ],
    "queue_wait": ["contender", "requests", "p50 ms", "p99 ms", "max ms"],
    "runs": [
        "contender",
        "req/s",
        "client CPU %",
        "server CPU %",
        "LOW done after last HIGH sent (min)",
    ],
}


def tables(summary: dict) -> list:
    out = [
        {
            "title": "Latency per class, submission to completion (pooled over the rounds)",
            "columns": TABLE_COLUMNS["latency"],
            "rows": latency_rows(summary),
        }
    ]
    waits = queue_wait_rows(summary)
    if waits:
        out.append(
            {
                "title": (
                    "Queue wait, submission to first attempt "
                    "(our get_stats(), both classes, median of rounds)"
                ),
                "columns": TABLE_COLUMNS["queue_wait"],
                "rows": waits,
            }
        )
    out.append(
        {
            "title": "Runs (medians over the rounds)",
            "columns": TABLE_COLUMNS["runs"],
            "rows": run_rows(summary),
        }
    )
    return out


def plots(summary: dict) -> list:
    series = {
        cls: [[name, round(summary[name][cls]["p99_ms"], 2)] for name in summary]
        for cls in (HIGH, LOW)
    }
    return [
        {
            "title": "p99 latency of HIGH and LOW requests under a saturated queue",
            "kind": "bar",
            "xlabel": "contender",
            "ylabel": "p99 latency (ms)",
            "series": series,
        }
    ]


def findings(summary: dict, args: argparse.Namespace) -> list:
    """One sentence per fact the numbers show, computed from them."""
    out = []
    ours = summary.get("ours")
    if ours:
        out.append(
            f"ours: with {args.low} LOW requests queued ahead, HIGH p99 is {ours[HIGH]['p99_ms']:.0f} ms "
            f"(p50 {ours[HIGH]['p50_ms']:.0f} ms; expected at most {2 * LATENCY * 1e3:.0f} ms: up to one "
            f"{LATENCY * 1e3:.0f} ms answer for a slot to free, then its own) while LOW waits "
            f"{ours[LOW]['p50_ms']:.0f} ms at p50 and {ours[LOW]['p99_ms']:.0f} ms at p99."
        )
    flat = summary.get("ours_no_priority")
    if ours and flat and ours[HIGH]["p99_ms"] > 0:
        out.append(
            f"Sent at NORMAL like the backlog, the same urgent requests take {flat[HIGH]['p99_ms']:.0f} ms "
            f"at p99: PRIORITY_HIGH cuts their p99 {flat[HIGH]['p99_ms'] / ours[HIGH]['p99_ms']:.0f}x."
        )
    peer = summary.get("litellm_router")
    if peer and ours and ours[HIGH]["p99_ms"] > 0:
        failed = peer[HIGH]["failed"] + peer[LOW]["failed"]
        why = (
            (
                " (LiteLLM's own RateLimitError when every max_parallel_requests slot is taken; the server "
                "limits nothing)"
            )
            if failed
            else ""
        )
        out.append(
            f"LiteLLM Router (priority=0, a backlog of {args.peer_low}): "
            f"HIGH p99 {peer[HIGH]['p99_ms']:.0f} ms, "
            f"LOW p99 {peer[LOW]['p99_ms']:.0f} ms, {failed} failed{why}; "
            f"its HIGH p99 is {peer[HIGH]['p99_ms'] / ours[HIGH]['p99_ms']:.0f}x ours."
        )
    for name, m in summary.items():
        if min(m["low_after_last_high"], default=0) <= 0:
            out.append(
                f"{name}: in some run the backlog ran dry before the last HIGH request was sent."
            )
    return out


def print_tables(document: dict) -> None:
    for table in document["tables"]:
        print(f"\n{table['title']}")
        widths = [
            max(
                len(str(c)),
                *(
                    len(f"{r[i]:,}" if isinstance(r[i], (int, float)) else str(r[i]))
                    for r in table["rows"]
                ),
            )
            + 2
            for i, c in enumerate(table["columns"])
        ]
        print(
            "".join(
                f"{c:>{w}}" if i else f"{c:<{w}}"
                for i, (c, w) in enumerate(zip(table["columns"], widths, strict=False))
            )
        )
        for row in table["rows"]:
            cells = [f"{v:,}" if isinstance(v, (int, float)) else str(v) for v in row]
            print(
                "".join(
                    f"{c:>{w}}" if i else f"{c:<{w}}"
                    for i, (c, w) in enumerate(zip(cells, widths, strict=False))
                )
            )
    print()
    for line in document["findings"]:
        print(f"- {line}")


# ---------------------------------------------------------------------- main


def parse_args(argv: list | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="A B C rounds")
    parser.add_argument(
        "--low", type=int, default=DEFAULT_LOW, help="LOW requests submitted at once (the backlog)"
    )
    parser.add_argument(
        "--high",
        type=int,
        default=DEFAULT_HIGH,
        help=f"HIGH requests, one every {HIGH_INTERVAL * 1e3:g} ms",
    )
    parser.add_argument(
        "--peer-low", type=int, default=DEFAULT_PEER_LOW, help="the backlog of LiteLLM's runs"
    )
    parser.add_argument(
        "--contenders",
        nargs="+",
        choices=CONTENDERS,
        help=f"default: all; with --quick: {' '.join(QUICK_CONTENDERS)}",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin server and client to cores"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_LOW} LOW + {QUICK_HIGH} HIGH ({QUICK_PEER_LOW} LOW for LiteLLM), 1 round, "
        f"LiteLLM left out unless named in --contenders",
    )
    parser.add_argument("--json", metavar="PATH", help="write the figures to PATH")
    args = parser.parse_args(argv)
    if args.quick:
        args.low, args.high, args.peer_low, args.rounds = QUICK_LOW, QUICK_HIGH, QUICK_PEER_LOW, 1
    if min(args.rounds, args.low, args.high, args.peer_low) < 1:
        parser.error("--rounds, --low, --high and --peer-low must be >= 1")
    chosen = args.contenders or (QUICK_CONTENDERS if args.quick else CONTENDERS)
    args.contenders = tuple(c for c in CONTENDERS if c in chosen)  # the documented order
    return args


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    contenders = tuple(c for c in args.contenders if available(c))
    skipped = {c: f"{OPTIONAL[c]} is not installed" for c in args.contenders if c not in contenders}
    pin = can_pin(args.no_pin)
    if "litellm_router" in contenders:
        quiet_litellm()  # its import (seconds; it starts no thread) before this process is pinned
    with pinned_simulator(pin) as (proc, url):
        set_latency(url, LATENCY)
        print(
            f"simulator {url} (pid {proc.pid}), latency {LATENCY * 1e3:g} ms; pinned: {pinning_note(pin)}; "
            f"rounds {args.rounds}; {args.low} LOW at once (LiteLLM: {args.peer_low}), then {args.high} HIGH "
            f"one every {HIGH_INTERVAL * 1e3:g} ms; {CONCURRENCY} in flight at most",
            flush=True,
        )
        for name, reason in skipped.items():
            print(f"skipped {name}: {reason}", flush=True)
        runs = run_in_new_loop(run_all(url, proc.pid, contenders, args))
    summary = summarise(runs)
    document = build_document(args, pin, contenders, skipped, summary)
    document["findings"] += [f"{name} skipped: {reason}." for name, reason in skipped.items()]
    print_tables(document)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(document, out, indent=2)
    return exit_status(summary)


def build_document(
    args: argparse.Namespace, pin: bool, contenders: tuple, skipped: dict, summary: dict
) -> dict:
    versions = {"python": platform.python_version()}
    versions.update({OPTIONAL[c]: version(OPTIONAL[c]) for c in contenders if c in OPTIONAL})
    return {
        "scenario": SCENARIO,
        "title": "Priority under saturation: HIGH requests arriving behind a full queue of LOW ones",
        "description": (
            f"The simulator answers after {LATENCY * 1e3:g} ms and each client may have {CONCURRENCY} requests in "
            f"flight. A backlog of {args.low} LOW chat requests ({args.peer_low} for LiteLLM, whose scheduler polls "
            f"per waiting request) is submitted at once, then {args.high} HIGH requests arrive one every "
            f"{HIGH_INTERVAL * 1e3:g} ms while it is still queued. Latency is timed per request on the caller's side, "
            f"from submission to completion, pooled over {args.rounds} round(s); ours_no_priority sends both streams "
            f"at NORMAL to show what HIGH buys."
        ),
        "config": {
            "latency_s": LATENCY,
            "max_concurrent_requests": CONCURRENCY,
            "low": args.low,
            "high": args.high,
            "peer_low": args.peer_low,
            "high_interval_s": HIGH_INTERVAL,
            "high_start_s": HIGH_START,
            "rounds": args.rounds,
            "quick": args.quick,
            "pinned": pin,
            "litellm_polling_interval_s": LITELLM_POLLING_INTERVAL,
            "retries": RETRIES,
            "our_queue_aging_interval": "default (30 s): longer than a run",
            "contenders": list(contenders),
            "skipped": skipped,
            "cpus": os.cpu_count(),
            **versions,
        },
        "tables": tables(summary),
        "plots": plots(summary),
        "findings": findings(summary, args),
        "contenders": summary,
    }


def exit_status(summary: dict) -> int:
    """1 when ours failed a request or its backlog ran dry before the last HIGH request was sent."""
    ours = summary.get("ours")
    if ours is None:
        return 0
    bad = ours[HIGH]["failed"] + ours[LOW]["failed"]
    if bad or min(ours["low_after_last_high"]) <= 0:
        print(
            f"ours: {bad} failed, LOW done after the last HIGH was sent, per run {ours['low_after_last_high']}: "
            f"the measurement did not hold",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    run_script(main)
