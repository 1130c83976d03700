"""A total outage mid-run: what each client sends to a dead server, how fast it fails, how soon it recovers.

Each contender sends one small chat request (``gpt-4o-mini``) at a steady
offered rate (open loop: ``--rate`` requests/s, default 100, each request a
task of its own, started on schedule whatever the earlier ones are doing)
for ``--seconds`` (30; quick: 6).  ``--outage-at`` seconds in (10; quick: 2)
the simulator is switched to ``outage: true`` (every request answered 503,
no Retry-After) through ``POST /_admin/config`` for ``--outage-seconds``
(10; quick: 2), then back.  The contenders run one after another, each with
its own outage window, on one event loop of this process (uvloop when
installed):

* ``ours``: ``openai_api`` with ``failure_threshold=5``,
  ``reset_timeout=1.0``, ``max_retries=2``, ``request_deadline=5``, batching
  off and everything else on; ``await client.achat(...)``; while the circuit
  is OPEN it fails fast (``on_circuit_open="fail"``, the default);
* ``ours_wait``: the same with ``on_circuit_open="wait"``: while the circuit
  is OPEN requests wait queued for the probe that closes it, within their
  5 s deadline (the queue holds what the outage's offered load needs);
* ``openai_sdk``: ``openai.AsyncOpenAI(max_retries=2)``;
* ``litellm_router``: ``litellm.Router`` over one deployment at the
  simulator, ``num_retries=2``, its cooldown and ``allowed_fails`` defaults,
  kept offline.

``openai`` and ``litellm`` are optional (skipped with a note when missing).
``--quick`` runs ``ours`` and ``openai_sdk`` only (LiteLLM's import alone
takes seconds; ``--contenders`` to choose).  The default rate is one every
client keeps up with on one core (LiteLLM's Router tops out near 170/s).
The outage is switched, and the server's request count read every second,
from threads of their own, so a client that starves its event loop cannot
move the window.  A request is timed from its scheduled start.  Measured per contender: requests sent (by the caller),
succeeded, failed; requests started during the outage and how many of
them were lost (failed), ours once per circuit mode; requests the server saw during the outage (its
``requests_total`` read when the outage began and when it ended); the time
to fail fast (median latency of the requests started during the outage
after its first failure, that failed); the time to recover (from the
outage's end to the first success completed after it); p99 latency of the
successful requests wholly outside the outage.  Plotted: successes and
requests reaching the server per second.  Exit 1 when a contender saw no
success before the outage or the server answered none of its requests 503 (the
outage did not take).

    python benchmarks/outage.py [--rate 100] [--seconds 30] [--outage-at 10] [--outage-seconds 10]
                                [--contenders ...] [--no-pin] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, NamedTuple

import aiohttp
from async_overhead import (
    API_KEY,
    MESSAGES,
    MODEL,
    OPTIONAL,
    Client,
    available,
    close_litellm,
    litellm_router_contender,
    openai_sdk_contender,
    preload,
    skip_note,
)
from procs import (
    ADMIN_HEADERS,
    Batch,
    Meter,
    can_pin,
    failure_reason,
    our_metadata,
    percentile,
    pinned_simulator,
    pinning_note,
    run_in_new_loop,
    run_script,
)

RATE = 100.0  # offered requests/s: LiteLLM's Router tops out near 170/s on one core here
SECONDS, OUTAGE_AT, OUTAGE_SECONDS = 30.0, 10.0, 10.0
QUICK_SECONDS, QUICK_OUTAGE_AT, QUICK_OUTAGE_SECONDS = 6.0, 2.0, 2.0
BIN, QUICK_BIN = 1.0, 0.5  # seconds per point of the plots
DRAIN_CAP = 10.0  # seconds the requests still running at the end may take; the rest count as failed
WARMUP = 20  # requests before each run: connections and code paths warm
CONCURRENCY = 64  # ours: max_concurrent_requests (the peers have no such cap)
OURS_SETTINGS = {
    "failure_threshold": 5,
    "reset_timeout": 1.0,
    "max_retries": 2,
    "request_deadline": 5.0,
}
WAIT_SETTINGS = {
    "on_circuit_open": "wait"
}  # ours_wait: the queue is sized in ours_contender for the load
ADMIN_TIMEOUT = 10.0  # seconds

CONTENDERS = ("ours", "ours_wait", "openai_sdk", "litellm_router")
QUICK_CONTENDERS = ("ours", "ours_wait", "openai_sdk")


@contextlib.asynccontextmanager
async def ours_contender(url: str, concurrency: int, **settings: Any) -> AsyncIterator[Client]:
    from ipfs_accelerate_py.api_backends import openai_api

    client = openai_api(
        metadata={**our_metadata(url, API_KEY, concurrency), **OURS_SETTINGS, **settings}
    )
    try:

        async def call() -> bool:
            return "choices" in await client.achat(MODEL, MESSAGES)

        yield Client(call)
    finally:
        await client.aclose()


def ours_wait_contender(url: str, concurrency: int) -> Any:
    # a deadline's worth of the offered load may wait for the probe at once
    queue = int(RATE * 4 * OURS_SETTINGS["request_deadline"])
    return ours_contender(url, concurrency, queue_size=queue, **WAIT_SETTINGS)


FACTORIES = {
    "ours": ours_contender,
    "ours_wait": ours_wait_contender,
    "openai_sdk": openai_sdk_contender,
    "litellm_router": litellm_router_contender,
}


# ------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Schedule:
    """The offered load and the outage window, in seconds since the run's start."""

    rate: float
    seconds: float
    outage_at: float
    outage_seconds: float
    bin: float

    @property
    def outage_end(self) -> float:
        return self.outage_at + self.outage_seconds


class Shot(NamedTuple):
    """One request: scheduled start and completion (seconds since the run's start), failure reason or None."""

    sent: float
    done: float
    reason: str | None


class Window(NamedTuple):
    """The outage as it happened: when it took, when it was lifted, API requests the server saw meanwhile."""

    start: float
    end: float
    server_requests: int


@dataclass
class Run:
    name: str
    shots: list
    window: Window
    server_series: list  # [(seconds since start, API requests the server had seen)]
    outage_503s: int
    usage: Batch  # wall time and CPU of the run (client, server, other processes on the benchmark cores)


class Admin:
    """The simulator's ``/_admin`` endpoints (never counted, never faulted), blocking calls."""

    def __init__(self, url: str) -> None:
        self.root = url[: -len("/v1")] if url.endswith("/v1") else url

    def _call(self, method: str, path: str, body: Any = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.root}/_admin/{path}", data=data, method=method, headers=ADMIN_HEADERS
        )
        with urllib.request.urlopen(request, timeout=ADMIN_TIMEOUT) as response:
            return json.loads(response.read())

    def configure(self, **fields: Any) -> dict:
        return self._call("POST", "config", fields)

    def reset(self) -> dict:
        return self._call("POST", "reset", {"scenario": True})

    def requests_total(self) -> int:
        return self._call("GET", "counters")["requests_total"]

    def outage_503s(self) -> int:
        return self._call("GET", "counters")["faults"].get("outage", 0)


class Conductor:
    """Switches the outage on and off on time and reads the server's request
    count every ``bin`` seconds, from threads of its own: a client that
    starves its event loop cannot move the outage window or the readings."""

    def __init__(self, admin: Admin, schedule: Schedule, t0: float) -> None:
        self.admin = admin
        self.schedule = schedule
        self.t0 = t0
        self.series: list = []  # [(seconds since start, API requests the server had seen)]
        self.window: Window | None = None
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._outage, daemon=True),
            threading.Thread(target=self._poll, daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> Window:
        """Stop polling (after one last reading); the outage window, waiting for it to end if need be."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self.window is None:
            raise RuntimeError("the outage was not switched on and off (see the error above)")
        return self.window

    def _wait_until(self, at: float) -> bool:
        """Sleep until ``at`` seconds since start; False if stopped first."""
        return not self._stop.wait(max(0.0, self.t0 + at - time.perf_counter()))

    def _now(self) -> float:
        return time.perf_counter() - self.t0

    def _outage(self) -> None:
        # the window is waited out even when stop() comes first: the server must come back
        time.sleep(max(0.0, self.t0 + self.schedule.outage_at - time.perf_counter()))
        self.admin.configure(outage=True)
        start = self._now()  # from here on every request is answered 503
        before = self.admin.requests_total()
        time.sleep(max(0.0, self.t0 + self.schedule.outage_end - time.perf_counter()))
        after = self.admin.requests_total()
        end = self._now()  # until here every request was answered 503
        self.admin.configure(outage=False)
        self.window = Window(start, end, after - before)

    def _poll(self) -> None:
        tick = 0
        while True:
            running = self._wait_until(tick * self.schedule.bin)
            self.series.append((self._now(), self.admin.requests_total()))
            if not running:
                return
            tick += 1


async def one_request(
    call: Callable[[], Awaitable[bool]], sent: float, t0: float, shots: list
) -> None:
    try:
        reason = None if await call() else "bad reply"
    except Exception as exc:  # a failed request is counted, never fatal to the run
        reason = failure_reason(exc)
    shots.append(Shot(sent, time.perf_counter() - t0, reason))


async def offer_load(
    call: Callable[[], Awaitable[bool]], schedule: Schedule, t0: float, shots: list, tasks: set
) -> None:
    """Start request n at ``t0 + n / rate`` (late ones at once), each its own task."""
    total = int(schedule.rate * schedule.seconds)
    n = 0
    while n < total:
        due = min(total, int((time.perf_counter() - t0) * schedule.rate) + 1)
        while n < due:
            task = asyncio.ensure_future(one_request(call, n / schedule.rate, t0, shots))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.sleep(max(0.0, t0 + n / schedule.rate - time.perf_counter()))


async def run_one(name: str, url: str, admin: Admin, schedule: Schedule, server_pid: int) -> Run:
    """A fresh client, a warm-up, counters zeroed, then the run with its outage and the drain."""
    async with FACTORIES[name](url, CONCURRENCY) as client:
        for _ in range(WARMUP):
            await client.call()
        admin.reset()
        shots: list = []
        tasks: set = set()
        meter = Meter(server_pid)
        meter.start()
        t0 = time.perf_counter()
        conductor = Conductor(admin, schedule, t0)
        conductor.start()
        try:
            await offer_load(client.call, schedule, t0, shots, tasks)
            await drain(tasks, shots, t0)
        finally:
            window = conductor.stop()
        usage = meter.stop([], {})
        if client.settle is not None:
            await client.settle()
    return Run(name, shots, window, conductor.series, admin.outage_503s(), usage)


async def drain(tasks: set, shots: list, t0: float) -> None:
    """Wait for the requests still running, at most DRAIN_CAP; those left count as failed."""
    if not tasks:
        return
    _, late = await asyncio.wait(list(tasks), timeout=DRAIN_CAP)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    now = time.perf_counter() - t0
    shots.extend(Shot(now, now, f"unfinished after {DRAIN_CAP:g} s drain") for _ in late)


async def run_all(url: str, contenders: tuple, schedule: Schedule, server_pid: int) -> list:
    runs = []
    admin = Admin(url)
    try:
        for name in contenders:
            print(
                f"  {name}: {schedule.rate:g} req/s for {schedule.seconds:g} s, outage "
                f"{schedule.outage_at:g}-{schedule.outage_end:g} s ...",
                flush=True,
            )
            runs.append(await run_one(name, url, admin, schedule, server_pid))
    finally:
        await close_litellm()
    return runs


# ----------------------------------------------------------------- figures


def figures(run: Run) -> dict:
    """What the table shows for one run (None where there was nothing to measure)."""
    window = run.window
    ok = [s for s in run.shots if s.reason is None]
    failed = [s for s in run.shots if s.reason is not None]
    first_failure = min((s.done for s in failed if s.done >= window.start), default=None)
    fast = [
        s.done - s.sent
        for s in failed
        if first_failure is not None and first_failure <= s.sent < window.end
    ]
    recovered = min((s.done for s in ok if s.done >= window.end), default=None)
    outside = sorted(s.done - s.sent for s in ok if s.done <= window.start or s.sent >= window.end)
    bridged = [s.done - s.sent for s in ok if window.start <= s.sent < window.end]
    reasons: dict = {}
    for shot in failed:
        reasons[shot.reason] = reasons.get(shot.reason, 0) + 1
    return {
        "sent": len(run.shots),
        "succeeded": len(ok),
        "failed": len(failed),
        "sent_during_outage": sum(1 for s in run.shots if window.start <= s.sent < window.end),
        "server_during_outage": window.server_requests,
        "server_503s": run.outage_503s,
        "fail_fast_ms": statistics.median(fast) * 1e3 if fast else None,
        "recover_s": recovered - window.end if recovered is not None else None,
        "p99_outside_ms": percentile(outside, 0.99) * 1e3 if outside else None,
        "succeeded_from_outage": len(bridged),
        "succeeded_from_outage_p50_s": statistics.median(bridged) if bridged else None,
        "succeeded_before_outage": sum(1 for s in ok if s.done <= window.start),
        "failed_during_outage": sum(1 for s in failed if window.start <= s.sent < window.end),
        "client_cpu_s": run.usage.client_cpu,
        "client_cpu_share": run.usage.client_cpu / run.usage.wall,
        "server_cpu_share": run.usage.server_cpu / run.usage.wall,
        "others_cpu_share": max(0.0, run.usage.foreign_cpu / run.usage.wall),
        "wall_s": run.usage.wall,
        "outage_window_s": [window.start, window.end],
        "failure_reasons": reasons,
    }


def successes_per_second(run: Run, schedule: Schedule) -> list:
    """``[[bin start, successes completed in the bin / bin]]`` from 0 to the end of the run or the
    last completion (the drain), whichever is later."""
    last = max([schedule.seconds] + [s.done for s in run.shots])
    counts = [0] * (int(last / schedule.bin) + 1)
    for shot in run.shots:
        if shot.reason is None:
            counts[int(shot.done / schedule.bin)] += 1
    return [[round(i * schedule.bin, 3), n / schedule.bin] for i, n in enumerate(counts)]


def server_per_second(run: Run) -> list:
    """``[[time, API requests/s the server saw since the previous reading]]``."""
    points = []
    for (t_a, n_a), (t_b, n_b) in zip(run.server_series, run.server_series[1:], strict=False):
        points.append([round(t_b, 3), (n_b - n_a) / max(1e-9, t_b - t_a)])
    return points


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


COLUMNS = [
    "contender",
    "on_circuit_open",
    "sent",
    "succeeded",
    "failed",
    "started during outage",
    "lost of those",
    "server saw during outage",
    "fail fast p50 ms",
    "recover s",
    "p99 ms outside outage",
]
CIRCUIT_MODES = {"ours": "fail", "ours_wait": "wait"}  # the peers have no circuit: "-"


def table_rows(figs: dict) -> list:
    return [
        [
            name,
            CIRCUIT_MODES.get(name),
            f["sent"],
            f["succeeded"],
            f["failed"],
            f["sent_during_outage"],
            f["failed_during_outage"],
            f["server_during_outage"],
            rounded(f["fail_fast_ms"], 3),
            rounded(f["recover_s"], 3),
            rounded(f["p99_outside_ms"], 3),
        ]
        for name, f in figs.items()
    ]


def print_table(figs: dict, schedule: Schedule) -> None:
    offered = int(schedule.rate * schedule.outage_seconds)
    print(
        f"\n{schedule.rate:g} req/s offered for {schedule.seconds:g} s; outage "
        f"{schedule.outage_at:g}-{schedule.outage_end:g} s ({offered} requests offered during it)"
    )
    print(
        f"{'contender':<20}{'circuit':>8}{'sent':>7}{'ok':>7}{'failed':>8}{'lost in outage':>16}"
        f"{'server in outage':>18}{'fail fast ms':>14}{'recover s':>11}{'p99 ms outside':>16}"
    )
    for name, f in figs.items():
        lost = f"{f['failed_during_outage']}/{f['sent_during_outage']}"
        print(
            f"{name:<20}{CIRCUIT_MODES.get(name, '-'):>8}{f['sent']:>7}{f['succeeded']:>7}{f['failed']:>8}"
            f"{lost:>16}{f['server_during_outage']:>18}"
            f"{fmt(f['fail_fast_ms'], '.2f'):>14}{fmt(f['recover_s'], '.3f'):>11}"
            f"{fmt(f['p99_outside_ms'], '.2f'):>16}"
        )
    for name, f in figs.items():
        print(
            f"  {name}: failures {f['failure_reasons'] or 'none'}; {f['wall_s']:.1f} s; CPU (shares of "
            f"one core) client {f['client_cpu_share']:.0%}, server {f['server_cpu_share']:.0%}, "
            f"other processes {f['others_cpu_share']:.0%}"
        )


def findings(figs: dict, schedule: Schedule) -> list:
    """One sentence per fact the figures show, ours against each peer."""
    if "ours" not in figs:
        return []
    ours = figs["ours"]
    out = []
    offered = ours["sent_during_outage"]
    for peer, f in figs.items():
        if peer.startswith("ours"):
            continue
        ratio = f["server_during_outage"] / max(1, ours["server_during_outage"])
        out.append(
            f"During the {schedule.outage_seconds:g} s outage ({offered} requests offered) ours sent "
            f"{ours['server_during_outage']} requests to the dead server vs "
            f"{f['server_during_outage']} for {peer} ({ratio:.0f}x as many)."
        )
        out.append(
            f"Of the requests started during the outage, ours failed {ours['failed_during_outage']} "
            f"and {peer} {f['failed_during_outage']}; over the whole run ours succeeded "
            f"{ours['succeeded']} of {ours['sent']} and {peer} {f['succeeded']} of {f['sent']}."
        )
        if f["succeeded_from_outage"]:
            out.append(
                f"{peer}'s retries carried {f['succeeded_from_outage']} requests started during the "
                f"outage through to a success, after a median "
                f"{f['succeeded_from_outage_p50_s']:.1f} s."
            )
        if ours["fail_fast_ms"] is not None and f["fail_fast_ms"] is not None:
            out.append(
                f"Once the outage was noticed, ours failed a request in a median "
                f"{ours['fail_fast_ms']:.2f} ms vs {f['fail_fast_ms']:.0f} ms for {peer}."
            )
        if ours["recover_s"] is not None and f["recover_s"] is not None:
            out.append(
                f"After the outage ours succeeded again within {ours['recover_s']:.3f} s "
                f"(reset_timeout {OURS_SETTINGS['reset_timeout']:g} s) vs {f['recover_s']:.3f} s "
                f"for {peer}."
            )
    wait = figs.get("ours_wait")
    if wait is not None:
        out.append(
            f"With on_circuit_open='wait', ours lost {wait['failed_during_outage']} of the "
            f"{wait['sent_during_outage']} requests started during the outage (fail-fast: "
            f"{ours['failed_during_outage']} of {offered}), sending the dead server "
            f"{wait['server_during_outage']} requests; over the whole run it succeeded "
            f"{wait['succeeded']} of {wait['sent']}."
        )
    if ours["p99_outside_ms"] is not None:
        out.append(
            f"Outside the outage ours answered with p99 {ours['p99_outside_ms']:.1f} ms; "
            f"{ours['failed']} of its {ours['sent']} requests failed, all but "
            f"{ours['failed'] - ours['failed_during_outage']} of them sent during the outage."
        )
    return out


def measurement_failed(figs: dict) -> list:
    """The contenders whose run says the set-up did not work: no success before the outage, or the
    server answered none of their requests with the outage's 503 (it did not take)."""
    return [
        name
        for name, f in figs.items()
        if f["succeeded_before_outage"] == 0 or f["server_503s"] == 0
    ]


# ---------------------------------------------------------------------- main


def parse_args(argv: list | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=RATE, help="offered requests/s (open loop)")
    parser.add_argument("--seconds", type=float, help=f"length of each run (default {SECONDS:g})")
    parser.add_argument(
        "--outage-at", type=float, help=f"seconds into the run (default {OUTAGE_AT:g})"
    )
    parser.add_argument(
        "--outage-seconds", type=float, help=f"length of the outage (default {OUTAGE_SECONDS:g})"
    )
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS)
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin server and client to cores"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_SECONDS:g} s runs, outage {QUICK_OUTAGE_AT:g}-"
        f"{QUICK_OUTAGE_AT + QUICK_OUTAGE_SECONDS:g} s, {' and '.join(QUICK_CONTENDERS)}",
    )
    parser.add_argument("--json", metavar="PATH", help="write the figures to PATH")
    args = parser.parse_args(argv)
    quick = args.quick
    args.schedule = Schedule(
        rate=args.rate,
        seconds=args.seconds or (QUICK_SECONDS if quick else SECONDS),
        outage_at=(
            args.outage_at
            if args.outage_at is not None
            else QUICK_OUTAGE_AT
            if quick
            else OUTAGE_AT
        ),
        outage_seconds=args.outage_seconds or (QUICK_OUTAGE_SECONDS if quick else OUTAGE_SECONDS),
        bin=QUICK_BIN if quick else BIN,
    )
    s = args.schedule
    if s.rate <= 0 or s.outage_at <= 0 or s.outage_seconds <= 0 or s.outage_end >= s.seconds:
        parser.error(
            "--rate, --outage-at and --outage-seconds must be > 0, and the outage must end "
            "before the run does"
        )
    chosen = args.contenders or (QUICK_CONTENDERS if quick else CONTENDERS)
    args.contenders = tuple(c for c in CONTENDERS if c in chosen)  # the documented order
    return args


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    schedule = args.schedule
    contenders = tuple(c for c in args.contenders if available(c))
    skipped = [c for c in args.contenders if c not in contenders]
    pin = can_pin(args.no_pin)
    with pinned_simulator(pin) as (proc, url):  # before any thread of ours exists
        print(f"simulator {url} (pid {proc.pid}); pinned: {pinning_note(pin)}", flush=True)
        for name in skipped:
            print(skip_note(name), flush=True)
        preload(contenders, freeze=True)
        runs = run_in_new_loop(run_all(url, contenders, schedule, proc.pid))
    figs = {run.name: figures(run) for run in runs}
    print_table(figs, schedule)
    facts = findings(figs, schedule)
    for fact in facts:
        print(f"- {fact}")
    if args.json:
        write_json(args.json, args.quick, pin, schedule, contenders, skipped, runs, figs, facts)
    broken = measurement_failed(figs)
    if broken:
        print(
            f"measurement failed for {', '.join(broken)}: no success before the outage or no "
            "outage 503 at the server",
            file=sys.stderr,
        )
        return 1
    return 0


def write_json(
    path: str,
    quick: bool,
    pin: bool,
    schedule: Schedule,
    contenders: tuple,
    skipped: list,
    runs: list,
    figs: dict,
    facts: list,
) -> None:
    versions = {"python": platform.python_version(), "aiohttp": aiohttp.__version__}
    versions.update({OPTIONAL[c]: version(OPTIONAL[c]) for c in contenders if c in OPTIONAL})
    document = {
        "scenario": "outage",
        "title": "Total outage mid-run: requests sent to a dead server, failing fast, recovering",
        "description": (
            f"Each client sends chat requests at {schedule.rate:g} req/s open loop (each its own task) "
            f"for {schedule.seconds:g} s; {schedule.outage_at:g} s in the simulator answers every request "
            f"503 for {schedule.outage_seconds:g} s. Ours runs twice, once per circuit mode: on_circuit_open="
            "'fail' (the default: refuse at once while OPEN) and 'wait' (queue for the probe within the "
            "request's deadline). 'lost of those' counts the requests started during the outage that failed. "
            "'server saw during outage' is the simulator's request "
            "count over the window; 'fail fast' the median latency of requests started during the outage "
            "after its first failure that failed; 'recover' the time from the outage's end to the first "
            "success; p99 over the successes wholly outside the outage."
        ),
        "config": {
            "rate": schedule.rate,
            "seconds": schedule.seconds,
            "outage_at": schedule.outage_at,
            "outage_seconds": schedule.outage_seconds,
            "quick": quick,
            "pinned": pin,
            "model": MODEL,
            "ours": {"max_concurrent_requests": CONCURRENCY, **OURS_SETTINGS},
            "peer_retries": 2,
            "warmup": WARMUP,
            "contenders": list(contenders),
            "skipped": skipped,
            "cpus": os.cpu_count(),
            **versions,
        },
        "tables": [
            {
                "title": "Outage: what each client sent, lost and recovered",
                "columns": COLUMNS,
                "rows": table_rows(figs),
            }
        ],
        "plots": [
            {
                "title": f"Successes per second (outage {schedule.outage_at:g}-{schedule.outage_end:g} s)",
                "kind": "line",
                "xlabel": "seconds since start",
                "ylabel": "successes/s",
                "series": {run.name: successes_per_second(run, schedule) for run in runs},
            },
            {
                "title": "Requests reaching the server per second",
                "kind": "line",
                "xlabel": "seconds since start",
                "ylabel": "requests/s at the server",
                "series": {run.name: server_per_second(run) for run in runs},
            },
        ],
        "findings": facts,
        "contenders": figs,
    }
    with open(path, "w") as out:
        json.dump(document, out, indent=2)


if __name__ == "__main__":
    run_script(main)
