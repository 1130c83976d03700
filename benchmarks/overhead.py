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
import asyncio
import itertools
import json
import os
import platform
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import aiohttp
import httpx

from procs import (
    CLIENT_CORE,
    SERVER_CORE,
    own_cpu_seconds,
    process_cpu_seconds,
    start_simulator,
    stop_simulator,
    usable_cores,
)

CONCURRENCIES = (1, 16, 64)
TARGET_CONCURRENCY = 64
DEFAULT_REQUESTS = 3000
DEFAULT_ROUNDS = 3
DEFAULT_WARMUP = 300
SERIAL_SHARE = 3  # concurrency 1 runs requests // SERIAL_SHARE (it is the slowest per request)
QUICK_REQUESTS = 300
QUICK_WARMUP = 50
QUEUE_HEADROOM = 4  # openai_api queue_size = max(MIN_QUEUE_SIZE, QUEUE_HEADROOM * concurrency)
MIN_QUEUE_SIZE = 1024
FAILURE_TOLERANCE = 0.01  # a share of failed requests above this makes the run exit 1

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello"}]
API_KEY = "sk-bench-overhead"
BODY = json.dumps({"model": MODEL, "messages": MESSAGES}).encode()
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
CONTENDERS = ("aiohttp", "httpx_threads", "openai_api")
TARGETS = (  # (numerator, denominator, minimum ratio of requests/s at TARGET_CONCURRENCY)
    ("openai_api", "httpx_threads", 2.0),
    ("openai_api", "aiohttp", 0.3),
)


# ------------------------------------------------------------------ measuring


def cores_busy_seconds(cores: tuple) -> float:
    """Busy (not idle, not iowait) seconds of ``cores`` together, from /proc/stat."""
    wanted = {f"cpu{n}" for n in cores}
    busy = 0
    with open("/proc/stat") as stat:
        for line in stat:
            name, *ticks = line.split()
            if name in wanted:
                values = [int(t) for t in ticks[:8]]
                busy += sum(values) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")


@dataclass
class Batch:
    """One measured batch of one contender.  ``foreign_cpu`` is what other
    processes used of the two benchmark cores meanwhile (noise)."""

    requests: int
    failures: dict
    wall: float
    client_cpu: float
    server_cpu: float
    foreign_cpu: float
    latencies: list = field(default_factory=list, repr=False)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def figures(self) -> dict:
        lat = sorted(self.latencies)
        return {
            "requests_per_s": len(lat) / self.wall,
            "p50_ms": _percentile(lat, 0.50) * 1e3,
            "p99_ms": _percentile(lat, 0.99) * 1e3,
            "client_cpu_ms_per_request": self.client_cpu / max(1, self.requests) * 1e3,
            "client_cpu_utilisation": self.client_cpu / self.wall,
            "server_cpu_utilisation": self.server_cpu / self.wall,
            "foreign_cpu_utilisation": max(0.0, self.foreign_cpu / self.wall),
            "requests": self.requests,
            "failures": self.failed,
            "failure_reasons": dict(self.failures),
            "wall_s": self.wall,
        }


def _percentile(ordered: list, q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Meter:
    """Wall time, this process's CPU, the server's CPU and the busy time of
    ``cores`` between start() and stop()."""

    def __init__(self, server_pid: int, cores: tuple = (CLIENT_CORE, SERVER_CORE)) -> None:
        self.server_pid = server_pid
        self.cores = cores

    def _read(self) -> tuple:
        return (time.perf_counter(), own_cpu_seconds(), process_cpu_seconds(self.server_pid),
                cores_busy_seconds(self.cores))

    def start(self) -> None:
        self._t0 = self._read()

    def stop(self, latencies: list, failures: dict) -> Batch:
        delta = [end - start for end, start in zip(self._read(), self._t0)]
        wall, client, server, busy = delta
        return Batch(len(latencies) + sum(failures.values()), failures, wall, client, server,
                     busy - client - server, latencies)


def _failure(failures: dict, reason: str) -> None:
    failures[reason] = failures.get(reason, 0) + 1


# ---------------------------------------------------------------- contenders


def run_aiohttp(url: str, concurrency: int, warmup: int, requests: int, meter: Meter) -> Batch:
    """Raw aiohttp: one session, ``concurrency`` tasks, on a fresh (uv)loop."""
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_aiohttp_batch(url + "/chat/completions", concurrency, warmup,
                                                      requests, meter))
    finally:
        loop.close()


async def _aiohttp_batch(url: str, concurrency: int, warmup: int, requests: int, meter: Meter) -> Batch:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker(tickets: Any, latencies: list, failures: dict) -> None:
            for _ in tickets:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=BODY, headers=HEADERS) as response:
                        body = await response.read()
                        ok = response.status == 200 and "choices" in json.loads(body)
                except (aiohttp.ClientError, OSError, ValueError) as exc:
                    _failure(failures, type(exc).__name__)
                    continue
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    _failure(failures, f"status {response.status}")

        async def phase(n: int) -> tuple:
            tickets, latencies, failures = iter(range(n)), [], {}
            await asyncio.gather(*(worker(tickets, latencies, failures) for _ in range(concurrency)))
            return latencies, failures

        await phase(warmup)
        meter.start()
        return meter.stop(*await phase(requests))


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
                reason = type(exc).__name__
            if reason is None:
                latencies.append(time.perf_counter() - t0)
            else:
                with lock:
                    _failure(failures, reason)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    ready.wait()
    meter.start()
    for thread in threads:
        thread.join()
    return meter.stop(latencies, failures)


def run_httpx_threads(url: str, concurrency: int, warmup: int, requests: int, meter: Meter) -> Batch:
    """Raw httpx: one sync ``Client`` (default pool) shared by ``concurrency`` threads."""
    with httpx.Client() as client:
        def call() -> bool:
            response = client.post(url + "/chat/completions", content=BODY, headers=HEADERS)
            return response.status_code == 200 and "choices" in response.json()

        drive_threads(call, concurrency, warmup, Meter(meter.server_pid))
        return drive_threads(call, concurrency, requests, meter)


def openai_api_metadata(url: str, concurrency: int) -> dict:
    """Batching off, every other feature on (the breaker's rate rules too)."""
    return {
        "openai_api_key": API_KEY,
        "openai_api_base": url,
        "max_concurrent_requests": concurrency,
        "queue_size": max(MIN_QUEUE_SIZE, QUEUE_HEADROOM * concurrency),
        "batching_enabled": False,
        "failure_rate_threshold": 50.0,
        "slow_call_duration": 5.0,
        "slow_call_rate_threshold": 50.0,
    }


def run_openai_api(url: str, concurrency: int, warmup: int, requests: int, meter: Meter) -> Batch:
    """``openai_api.chat`` from ``concurrency`` threads."""
    from ipfs_accelerate_py.api_backends import openai_api

    client = openai_api(metadata=openai_api_metadata(url, concurrency))
    try:
        def call() -> bool:
            return "choices" in client.chat(MODEL, MESSAGES)

        drive_threads(call, concurrency, warmup, Meter(meter.server_pid))
        return drive_threads(call, concurrency, requests, meter)
    finally:
        client.close()


RUNNERS = {"aiohttp": run_aiohttp, "httpx_threads": run_httpx_threads, "openai_api": run_openai_api}


# ----------------------------------------------------------------- simulator


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


def print_batch(concurrency: int, round_no: int, rounds: int, name: str, batch: Batch) -> None:
    fig = batch.figures()
    failed = f"  FAILED {batch.failed}: {batch.failures}" if batch.failed else ""
    print(f"  c={concurrency:<3} round {round_no + 1}/{rounds} {name:<14}"
          f"{fig['requests_per_s']:>7,.0f} req/s  cpu {fig['client_cpu_ms_per_request']:.3f} ms/req"
          f"  client {fig['client_cpu_utilisation']:4.0%}  server {fig['server_cpu_utilisation']:4.0%}"
          f"  others {fig['foreign_cpu_utilisation']:4.0%}{failed}", flush=True)


def summarise(batches: dict) -> dict:
    """Median of each figure over the rounds, per contender and concurrency
    (failures summed); every round's figures kept under ``rounds``."""
    summary: dict = {}
    for name, by_c in batches.items():
        for concurrency, runs in by_c.items():
            figs = [b.figures() for b in runs]
            med = {k: statistics.median(f[k] for f in figs)
                   for k, v in figs[0].items() if isinstance(v, float)}
            med["requests"] = sum(f["requests"] for f in figs)
            med["failures"] = sum(f["failures"] for f in figs)
            med["failure_reasons"] = {}
            for b in runs:
                for reason, n in b.failures.items():
                    med["failure_reasons"][reason] = med["failure_reasons"].get(reason, 0) + n
            med["rounds"] = figs
            summary.setdefault(name, {})[str(concurrency)] = med
    return summary


def ratios(summary: dict, concurrencies: tuple) -> dict:
    """requests/s of openai_api over each raw contender: the ratio of the
    medians, and each round's ratio (contenders of one round ran back to back);
    ``cpu_ratio`` is their CPU per request over ours, the throughput ratio to
    expect when the client's core is the limit (steadier on a busy machine)."""
    out: dict = {}
    for c in concurrencies:
        ours = summary["openai_api"][str(c)]
        out[str(c)] = {}
        for other in ("httpx_threads", "aiohttp"):
            theirs = summary[other][str(c)]
            per_round = [a["requests_per_s"] / b["requests_per_s"]
                         for a, b in zip(ours["rounds"], theirs["rounds"])]
            out[str(c)][f"openai_api/{other}"] = {
                "ratio_of_medians": ours["requests_per_s"] / theirs["requests_per_s"],
                "per_round": per_round,
                "cpu_ratio": theirs["client_cpu_ms_per_request"] / ours["client_cpu_ms_per_request"],
            }
    return out


def check_targets(ratio: dict) -> list:
    """The targets at TARGET_CONCURRENCY, judged on the ratio of medians."""
    at = ratio.get(str(TARGET_CONCURRENCY))
    if at is None:
        return []
    checks = []
    for num, den, minimum in TARGETS:
        measured = at[f"{num}/{den}"]["ratio_of_medians"]
        checks.append({"name": f"{num}/{den}", "concurrency": TARGET_CONCURRENCY, "minimum": minimum,
                       "measured": measured, "passed": measured >= minimum})
    return checks


def print_report(summary: dict, ratio: dict, targets: list, concurrencies: tuple) -> None:
    print("\nmedians over the rounds (cpu = this process, user+sys; server and others = "
          "share of one core; others = other processes on the benchmark cores)")
    print(f"{'contender':<14}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'cpu ms/req':>12}{'client':>8}{'server':>8}{'others':>8}{'failed':>8}")
    for c in concurrencies:
        for name in CONTENDERS:
            m = summary[name][str(c)]
            print(f"{name:<14}{c:>5}{m['requests_per_s']:>9,.0f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}"
                  f"{m['client_cpu_ms_per_request']:>12.3f}{m['client_cpu_utilisation']:>8.0%}"
                  f"{m['server_cpu_utilisation']:>8.0%}{m['foreign_cpu_utilisation']:>8.0%}"
                  f"{m['failures']:>8}")
    print("\nratios of requests/s: ratio of medians (each round's ratio) [CPU per request, theirs/ours]")
    for c in concurrencies:
        parts = "  ".join(f"{k} = {v['ratio_of_medians']:.2f} ({' '.join(f'{r:.2f}' for r in v['per_round'])})"
                          f" [{v['cpu_ratio']:.2f}]" for k, v in ratio[str(c)].items())
        print(f"  c={c:<3} {parts}")
    for t in targets:
        verdict = "PASS" if t["passed"] else "FAIL"
        print(f"{verdict}: {t['name']} at concurrency {t['concurrency']} = {t['measured']:.2f} "
              f"(target >= {t['minimum']:g})")


def too_many_failures(summary: dict) -> list:
    """(contender, concurrency, failed, requests) wherever more than
    FAILURE_TOLERANCE of the requests failed: such figures mean little."""
    bad = []
    for name, by_c in summary.items():
        for c, m in by_c.items():
            if m["failures"] > FAILURE_TOLERANCE * m["requests"]:
                bad.append((name, c, m["failures"], m["requests"]))
    return bad


# ---------------------------------------------------------------------- main


def parse_args(argv: Optional[list]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="A B C rounds per concurrency")
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS,
                        help=f"measured requests per run (concurrency 1: a {SERIAL_SHARE}rd of it)")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="warm-up requests per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCIES))
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to cores")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_REQUESTS} requests, {QUICK_WARMUP} warm-up, 1 round (seconds)")
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.rounds = QUICK_REQUESTS, QUICK_WARMUP, 1
    if args.rounds < 1 or args.requests < 1 or args.warmup < 0 or min(args.concurrency) < 1:
        parser.error("--rounds, --requests and --concurrency must be >= 1, --warmup >= 0")
    args.concurrency = tuple(args.concurrency)
    return args


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # so that the finally blocks stop the simulator


def main(argv: Optional[list] = None) -> int:
    args = parse_args(argv)
    pin = not args.no_pin and {SERVER_CORE, CLIENT_CORE} <= usable_cores()
    signal.signal(signal.SIGTERM, _terminate)
    proc, url = start_simulator(pin)  # before any thread of ours exists (preexec_fn)
    try:
        if pin:
            os.sched_setaffinity(0, {CLIENT_CORE})
        print(f"simulator {url} (pid {proc.pid}); pinned: "
              f"{f'server core {SERVER_CORE}, client core {CLIENT_CORE}' if pin else 'no'}; "
              f"rounds {args.rounds}, requests {args.requests}, warm-up {args.warmup}", flush=True)
        batches = run_all(url, proc.pid, args)
    finally:
        stop_simulator(proc)
    summary = summarise(batches)
    ratio = ratios(summary, args.concurrency)
    targets = check_targets(ratio)
    print_report(summary, ratio, targets, args.concurrency)
    if args.json:
        write_json(args, pin, summary, ratio, targets)
    bad = too_many_failures(summary)
    for name, c, failed, total in bad:
        print(f"{name} at concurrency {c}: {failed} of {total} requests failed; its figures mean little",
              file=sys.stderr)
    if bad:
        return 1
    return 2 if args.strict and not all(t["passed"] for t in targets) else 0


def write_json(args: argparse.Namespace, pin: bool, summary: dict, ratio: dict, targets: list) -> None:
    document = {
        "config": {"rounds": args.rounds, "requests": args.requests, "warmup": args.warmup,
                   "concurrency": list(args.concurrency), "pinned": pin, "quick": args.quick,
                   "model": MODEL, "python": platform.python_version(),
                   "aiohttp": aiohttp.__version__, "httpx": httpx.__version__,
                   "cpus": os.cpu_count()},
        "contenders": summary,
        "ratios": ratio,
        "targets": targets,
    }
    with open(args.json, "w") as out:
        json.dump(document, out, indent=2)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the simulator was stopped by main()'s finally
        print("interrupted", file=sys.stderr)
        sys.exit(130)
