"""Client overhead: ``openai_api`` against raw aiohttp and raw httpx, same request, same server.

One small chat request (``gpt-4o-mini``, one short user message) is sent to
the simulator at zero latency by three contenders:

* ``aiohttp``: one ``ClientSession``, ``concurrency`` asyncio tasks in a loop
  (uvloop when installed), JSON body, the reply decoded with ``json.loads``;
* ``httpx_threads``: one ``httpx.Client`` (default pool) shared by
  ``concurrency`` threads, the reply decoded with ``response.json()``;
* ``openai_api``: ``client.chat(...)`` from ``concurrency`` threads; batching
  off, every other feature on (priority queue, circuit breaker with its
  failure-rate and slow-call rules, retries, stats),
  ``max_concurrent_requests=concurrency``.

The simulator runs as a subprocess pinned to core 1 and this process to core
0 (when there are two cores; ``--no-pin`` for an unpinned run).  For each
concurrency (1, 16, 64) the contenders alternate A B C A B C ... for
``--rounds`` rounds; each run is a warm-up, then a measured batch.  Printed
per contender: requests/s, p50/p99 latency as the caller saw it, client CPU
per request (user+sys of this whole process over the batch), and the
simulator's CPU use over the batch (so one can see it was not the limit);
medians over the rounds.  Then the ratios, and PASS/FAIL for the targets at
concurrency 64: openai_api >= 2x httpx_threads and >= 0.3x aiohttp.  Targets
set the exit status only with ``--strict``; more than 1% failed requests for
any contender exits 1 (raw httpx shared by threads sometimes fails a request
with ``ReadError: Bad file descriptor``; those are counted and shown).

    python benchmarks/overhead.py [--rounds 3] [--requests 3000] [--no-pin]
                                  [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import platform
import threading
import time
from collections.abc import Callable

import aiohttp
import httpx
from procs import (
    Batch,
    Meter,
    can_pin,
    check_targets,
    count_failure,
    drive_tasks,
    exit_status,
    failure_reason,
    new_event_loop,
    our_metadata,
    pinned_simulator,
    pinning_note,
    print_batch,
    print_report,
    ratios,
    run_script,
    summarise,
)

CONCURRENCIES = (1, 16, 64)
TARGET_CONCURRENCY = 64
DEFAULT_REQUESTS = 3000
DEFAULT_ROUNDS = 3
DEFAULT_WARMUP = 300
SERIAL_SHARE = 3  # concurrency 1 runs requests // SERIAL_SHARE (it is the slowest per request)
QUICK_REQUESTS = 300
QUICK_WARMUP = 50
RUN_CAP = (
    600.0  # seconds: a measured batch still running then is stopped, its rest counted as failed
)

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello"}]
API_KEY = "sk-bench-overhead"
BODY = json.dumps({"model": MODEL, "messages": MESSAGES}).encode()
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
CONTENDERS = (
    ("aiohttp", "httpx_threads")
    + (("openai_sdk_threads",) if importlib.util.find_spec("openai") else ())
    + ("openai_api",)
)  # the openai SDK only where it is installed (the bench extra)
TARGETS = (  # (numerator, denominator, minimum ratio of requests/s at TARGET_CONCURRENCY)
    ("openai_api", "httpx_threads", 2.0),
    ("openai_api", "aiohttp", 0.5),  # issue #15 (0.3 before)
)


# ---------------------------------------------------------------- contenders


def run_aiohttp(url: str, concurrency: int, warmup: int, requests: int, meter: Meter) -> Batch:
    """Raw aiohttp: one session, ``concurrency`` tasks, on a fresh (uv)loop."""
    loop = new_event_loop()
    try:
        return loop.run_until_complete(
            _aiohttp_batch(url + "/chat/completions", concurrency, warmup, requests, meter)
        )
    finally:
        loop.close()


async def _aiohttp_batch(
    url: str, concurrency: int, warmup: int, requests: int, meter: Meter
) -> Batch:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call() -> bool:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                response.raise_for_status()
                return "choices" in json.loads(await response.read())

        await drive_tasks(call, concurrency, warmup, Meter(meter.server_pid), RUN_CAP)
        return await drive_tasks(call, concurrency, requests, meter, RUN_CAP)


def drive_threads(call: Callable[[], bool], concurrency: int, requests: int, meter: Meter) -> Batch:
    """``concurrency`` threads run ``call`` ``requests`` times in all; the
    measurement starts once every thread is ready (thread start-up excluded).
    ``call`` returns whether the reply was right; an exception is a failure."""
    tickets = itertools.count()  # next() on it is atomic under the GIL
    latencies: list = []
    failures: dict = {}
    lock = threading.Lock()
    ready = threading.Barrier(concurrency + 1)

    def worker() -> None:
        ready.wait()
        while next(tickets) < requests:
            t0 = time.perf_counter()
            try:
                reason = None if call() else "bad reply"
            except Exception as exc:  # a failed request is counted, never fatal to the run
                reason = failure_reason(exc)
            if reason is None:
                latencies.append(time.perf_counter() - t0)
            else:
                with lock:
                    count_failure(failures, reason)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    ready.wait()
    meter.start()
    for thread in threads:
        thread.join()
    return meter.stop(latencies, failures)


def run_httpx_threads(
    url: str, concurrency: int, warmup: int, requests: int, meter: Meter
) -> Batch:
    """Raw httpx: one sync ``Client`` (default pool) shared by ``concurrency`` threads."""
    with httpx.Client() as client:

        def call() -> bool:
            response = client.post(url + "/chat/completions", content=BODY, headers=HEADERS)
            return response.status_code == 200 and "choices" in response.json()

        drive_threads(call, concurrency, warmup, Meter(meter.server_pid))
        return drive_threads(call, concurrency, requests, meter)


def run_openai_api(url: str, concurrency: int, warmup: int, requests: int, meter: Meter) -> Batch:
    """``openai_api.chat`` from ``concurrency`` threads."""
    from ipfs_accelerate_py.api_backends import openai_api

    client = openai_api(metadata=our_metadata(url, API_KEY, concurrency))
    try:

        def call() -> bool:
            return "choices" in client.chat(MODEL, MESSAGES)

        drive_threads(call, concurrency, warmup, Meter(meter.server_pid))
        return drive_threads(call, concurrency, requests, meter)
    finally:
        client.close()


def run_openai_sdk_threads(
    url: str, concurrency: int, warmup: int, requests: int, meter: Meter
) -> Batch:
    """The official sync SDK (``openai.OpenAI``, retries on) shared by ``concurrency`` threads."""
    import openai

    client = openai.OpenAI(base_url=url, api_key=API_KEY, max_retries=2)
    try:

        def call() -> bool:
            return bool(client.chat.completions.create(model=MODEL, messages=MESSAGES).choices)

        drive_threads(call, concurrency, warmup, Meter(meter.server_pid))
        return drive_threads(call, concurrency, requests, meter)
    finally:
        client.close()


RUNNERS = {
    "aiohttp": run_aiohttp,
    "httpx_threads": run_httpx_threads,
    "openai_sdk_threads": run_openai_sdk_threads,
    "openai_api": run_openai_api,
}


# ------------------------------------------------------------------- running


def run_all(url: str, server_pid: int, args: argparse.Namespace) -> dict:
    """Every concurrency, contenders alternating within each round: the batches."""
    batches: dict = {name: {c: [] for c in args.concurrency} for name in CONTENDERS}
    for concurrency in args.concurrency:
        requests = args.requests if concurrency > 1 else max(1, args.requests // SERIAL_SHARE)
        warmup = max(args.warmup, 2 * concurrency)
        for round_no in range(args.rounds):
            for name in CONTENDERS:
                batch = RUNNERS[name](url, concurrency, warmup, requests, Meter(server_pid))
                batches[name][concurrency].append(batch)
                print_batch(concurrency, round_no, args.rounds, name, batch)
    return batches


# ---------------------------------------------------------------------- main


def parse_args(argv: list | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help="A B C rounds per concurrency"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=DEFAULT_REQUESTS,
        help=f"measured requests per run (concurrency 1: a {SERIAL_SHARE}rd of it)",
    )
    parser.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP, help="warm-up requests per run"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCIES))
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin server and client to cores"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_REQUESTS} requests, {QUICK_WARMUP} warm-up, 1 round (seconds)",
    )
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.rounds = QUICK_REQUESTS, QUICK_WARMUP, 1
    if args.rounds < 1 or args.requests < 1 or args.warmup < 0 or min(args.concurrency) < 1:
        parser.error("--rounds, --requests and --concurrency must be >= 1, --warmup >= 0")
    args.concurrency = tuple(args.concurrency)
    return args


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    pin = can_pin(args.no_pin)
    with pinned_simulator(pin) as (proc, url):  # before any thread of ours exists
        print(
            f"simulator {url} (pid {proc.pid}); pinned: {pinning_note(pin)}; "
            f"rounds {args.rounds}, requests {args.requests}, warm-up {args.warmup}",
            flush=True,
        )
        batches = run_all(url, proc.pid, args)
    summary = summarise(batches)
    ratio = ratios(
        summary, "openai_api", tuple(c for c in CONTENDERS if c != "openai_api"), args.concurrency
    )
    targets = check_targets(ratio, TARGETS, (TARGET_CONCURRENCY,))
    print_report(summary, ratio, targets, CONTENDERS, args.concurrency)
    if args.json:
        write_json(args, pin, summary, ratio, targets)
    return exit_status(summary, targets, args.strict)


def write_json(
    args: argparse.Namespace, pin: bool, summary: dict, ratio: dict, targets: list
) -> None:
    document = {
        "config": {
            "rounds": args.rounds,
            "requests": args.requests,
            "warmup": args.warmup,
            "concurrency": list(args.concurrency),
            "pinned": pin,
            "quick": args.quick,
            "model": MODEL,
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
            "httpx": httpx.__version__,
            "cpus": os.cpu_count(),
        },
        "contenders": summary,
        "ratios": ratio,
        "targets": targets,
    }
    with open(args.json, "w") as out:
        json.dump(document, out, indent=2)


if __name__ == "__main__":
    run_script(main)
