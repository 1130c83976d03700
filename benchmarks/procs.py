"""Shared by the benchmarks: the simulator as a pinned subprocess, CPU accounting,
and the measured batch (drivers, medians, ratios, targets, the printed table).

The server runs on SERVER_CORE and the client on CLIENT_CORE when the machine
has both, so the two never fight for a core.  Every simulator started here gets
ADMIN_TOKEN (random, made once per benchmark process, passed in the child's
environment rather than on its command line); admin calls send ADMIN_HEADERS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import resource
import secrets
import selectors
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

SERVER_CORE = 1
CLIENT_CORE = 0
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 5.0
QUEUE_HEADROOM = 4  # our queue_size = max(MIN_QUEUE_SIZE, QUEUE_HEADROOM * concurrency)
MIN_QUEUE_SIZE = 1024
FAILURE_TOLERANCE = 0.01  # a share of failed requests above this makes a run's figures mean little
ADMIN_TOKEN_ENV = "IPFS_ACCELERATE_SIMULATOR_ADMIN_TOKEN"  # read by `ipfs_accelerate_py simulate`
ADMIN_TOKEN = secrets.token_urlsafe(24)
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
IMPOSSIBLE_TARGET_ENV = (
    "BENCH_IMPOSSIBLE_TARGET"  # "1": the first target checked cannot be met (tests of exit 2)
)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def usable_cores() -> set:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()


def start_simulator(pin: bool) -> tuple:
    """The simulator subprocess (pinned to SERVER_CORE before it runs) and its base URL."""
    pin_child = (lambda: os.sched_setaffinity(0, {SERVER_CORE})) if pin else None
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ipfs_accelerate_py",
            "simulate",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=pin_child,
        env={**os.environ, ADMIN_TOKEN_ENV: ADMIN_TOKEN},
    )
    try:
        line = _read_line(proc, SERVER_START_TIMEOUT)
        found = re.search(r"http://\S+", line)
        if not found:
            raise RuntimeError(f"the simulator did not announce its URL: {line!r}")
    except BaseException:
        stop_simulator(proc)
        raise
    return proc, found.group(0).rstrip("/")


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"the simulator said nothing within {timeout:.0f}s")
    return proc.stdout.readline()


def stop_simulator(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not gone within SERVER_STOP_TIMEOUT."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def pinned_simulator(pin: bool) -> Iterator[tuple]:
    """``(proc, url)`` of a running simulator; when ``pin``, it runs on SERVER_CORE
    and this process on CLIENT_CORE.  SIGTERM becomes SystemExit so that the
    simulator is stopped on the way out whatever happens.  Enter it before this
    process starts any thread (the pinning is inherited by threads made later)."""
    signal.signal(signal.SIGTERM, _terminate)
    proc, url = start_simulator(pin)
    try:
        if pin:
            os.sched_setaffinity(0, {CLIENT_CORE})
        yield proc, url
    finally:
        stop_simulator(proc)


def can_pin(no_pin: bool) -> bool:
    """Whether to pin: not refused, and both benchmark cores usable."""
    return not no_pin and {SERVER_CORE, CLIENT_CORE} <= usable_cores()


def pinning_note(pin: bool) -> str:
    return f"server core {SERVER_CORE}, client core {CLIENT_CORE}" if pin else "no"


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # so that the finally blocks stop the simulator


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def our_metadata(url: str, api_key: str, concurrency: int) -> dict:
    """``openai_api`` metadata for a benchmark: batching off, every other
    feature on (queue, breaker with its failure-rate and slow-call rules,
    retries, stats), ``max_concurrent_requests=concurrency``."""
    return {
        "openai_api_key": api_key,
        "openai_api_base": url,
        "max_concurrent_requests": concurrency,
        "queue_size": max(MIN_QUEUE_SIZE, QUEUE_HEADROOM * concurrency),
        "batching_enabled": False,
        "failure_rate_threshold": 50.0,
        "slow_call_duration": 5.0,
        "slow_call_rate_threshold": 50.0,
    }


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
            "p50_ms": percentile(lat, 0.50) * 1e3,
            "p99_ms": percentile(lat, 0.99) * 1e3,
            "client_cpu_ms_per_request": self.client_cpu / max(1, self.requests) * 1e3,
            "client_cpu_utilisation": self.client_cpu / self.wall,
            "server_cpu_utilisation": self.server_cpu / self.wall,
            "foreign_cpu_utilisation": max(0.0, self.foreign_cpu / self.wall),
            "requests": self.requests,
            "failures": self.failed,
            "failure_reasons": dict(self.failures),
            "wall_s": self.wall,
        }


def percentile(ordered: list, q: float) -> float:
    """The ``q`` quantile of an ascending list (nearest rank below); 0 when empty."""
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
        return (
            time.perf_counter(),
            own_cpu_seconds(),
            process_cpu_seconds(self.server_pid),
            cores_busy_seconds(self.cores),
        )

    def start(self) -> None:
        self._t0 = self._read()

    def stop(self, latencies: list, failures: dict) -> Batch:
        delta = [end - start for end, start in zip(self._read(), self._t0, strict=False)]
        wall, client, server, busy = delta
        return Batch(
            len(latencies) + sum(failures.values()),
            failures,
            wall,
            client,
            server,
            busy - client - server,
            latencies,
        )


def count_failure(failures: dict, reason: str) -> None:
    failures[reason] = failures.get(reason, 0) + 1


def failure_reason(exc: BaseException) -> str:
    """The exception's class name, and the HTTP status it carries if any."""
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    return f"{type(exc).__name__} {status}" if isinstance(status, int) else type(exc).__name__


async def run_capped(workers: list, cap: float) -> None:
    """Run the ``workers`` (coroutines) as tasks; those still running after
    ``cap`` seconds are cancelled (and waited for)."""
    tasks = [asyncio.ensure_future(worker) for worker in workers]
    _, pending = await asyncio.wait(tasks, timeout=cap)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def keep_litellm_offline() -> None:
    """LiteLLM fetches catalogues from the internet at import unless told not to."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")


async def drive_tasks(
    call: Callable[[], Awaitable[bool]],
    concurrency: int,
    requests: int,
    meter: Meter,
    cap: float,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> Batch:
    """``concurrency`` asyncio tasks await ``call()`` ``requests`` times in all,
    measured by ``meter``.  ``call`` returns whether the reply was right; an
    exception is a failure named by :func:`failure_reason`.  After ``cap``
    seconds the tasks are cancelled and the requests not done count as failed.
    ``settle()``, when given, is awaited after the last reply and before the
    meter stops: work the client deferred past its replies is its cost, and
    must not run on into whatever is measured next."""
    tickets = iter(range(requests))
    latencies: list = []
    failures: dict = {}

    async def worker() -> None:
        for _ in tickets:
            t0 = time.perf_counter()
            try:
                reason = None if await call() else "bad reply"
            except Exception as exc:  # a failed request is counted, never fatal to the run
                reason = failure_reason(exc)
            if reason is None:
                latencies.append(time.perf_counter() - t0)
            else:
                count_failure(failures, reason)

    meter.start()
    await run_capped([worker() for _ in range(concurrency)], cap)
    if settle is not None:
        await settle()
    batch = meter.stop(latencies, failures)
    unfinished = requests - batch.requests
    if unfinished > 0:
        failures[f"unfinished after {cap:g} s"] = unfinished  # batch.failures is this dict
        batch.requests = requests
    return batch


# ------------------------------------------------------------------ reporting


def print_batch(concurrency: int, round_no: int, rounds: int, name: str, batch: Batch) -> None:
    """One line per measured batch, as it finishes."""
    fig = batch.figures()
    failed = f"  FAILED {batch.failed}: {batch.failures}" if batch.failed else ""
    print(
        f"  c={concurrency:<3} round {round_no + 1}/{rounds} {name:<15}"
        f"{fig['requests_per_s']:>7,.0f} req/s  cpu {fig['client_cpu_ms_per_request']:.3f} ms/req"
        f"  client {fig['client_cpu_utilisation']:4.0%}  server {fig['server_cpu_utilisation']:4.0%}"
        f"  others {fig['foreign_cpu_utilisation']:4.0%}{failed}",
        flush=True,
    )


def summarise(batches: dict) -> dict:
    """``{name: {str(concurrency): figures}}`` from ``{name: {concurrency: [Batch]}}``:
    the median of each figure over the rounds (failures summed), every round's
    figures kept under ``rounds``."""
    summary: dict = {}
    for name, by_c in batches.items():
        for concurrency, runs in by_c.items():
            if not runs:
                continue
            figs = [b.figures() for b in runs]
            med = {
                k: statistics.median(f[k] for f in figs)
                for k, v in figs[0].items()
                if isinstance(v, float)
            }
            med["requests"] = sum(f["requests"] for f in figs)
            med["failures"] = sum(f["failures"] for f in figs)
            med["failure_reasons"] = {}
            for b in runs:
                for reason, n in b.failures.items():
                    med["failure_reasons"][reason] = med["failure_reasons"].get(reason, 0) + n
            med["rounds"] = figs
            summary.setdefault(name, {})[str(concurrency)] = med
    return summary


def ratios(summary: dict, ours: str, others: tuple, concurrencies: tuple) -> dict:
    """requests/s of ``ours`` over each of ``others`` present in ``summary``,
    per concurrency: the ratio of the medians, each round's ratio (contenders
    of one round ran back to back), and ``cpu_ratio``: their CPU per request
    over ours, the throughput ratio to expect when the client's core is the
    limit (steadier on a busy machine)."""
    out: dict = {}
    for c in concurrencies:
        mine = summary[ours][str(c)]
        out[str(c)] = {}
        for other in others:
            if other not in summary:
                continue
            theirs = summary[other][str(c)]
            per_round = [
                a["requests_per_s"] / b["requests_per_s"]
                for a, b in zip(mine["rounds"], theirs["rounds"], strict=False)
            ]
            out[str(c)][f"{ours}/{other}"] = {
                "ratio_of_medians": mine["requests_per_s"] / theirs["requests_per_s"],
                "per_round": per_round,
                "cpu_ratio": theirs["client_cpu_ms_per_request"]
                / mine["client_cpu_ms_per_request"],
            }
    return out


def check_targets(ratio: dict, targets: tuple, concurrencies: tuple) -> list:
    """Each ``(numerator, denominator, minimum)`` of ``targets`` at each of
    ``concurrencies`` measured (``(numerator, denominator, minimum, at)``: at
    concurrency ``at`` only), judged on the ratio of medians; a pair not
    measured (a contender skipped) is left out.  With ``BENCH_IMPOSSIBLE_TARGET=1``
    in the environment the first one's minimum is infinite, so that a test can
    see a missed target without waiting for a real one to be missed."""
    impossible = os.environ.get(IMPOSSIBLE_TARGET_ENV) == "1"
    checks = []
    for c in concurrencies:
        at = ratio.get(str(c), {})
        for num, den, minimum, *only in targets:
            if only and only[0] != c:
                continue
            pair = at.get(f"{num}/{den}")
            if pair is None:
                continue
            if impossible and not checks:
                minimum = math.inf
            measured = pair["ratio_of_medians"]
            checks.append(
                {
                    "name": f"{num}/{den}",
                    "concurrency": c,
                    "minimum": minimum,
                    "measured": measured,
                    "passed": measured >= minimum,
                }
            )
    return checks


def print_report(
    summary: dict, ratio: dict, targets: list, contenders: tuple, concurrencies: tuple
) -> None:
    """The table of medians, the ratios, and a PASS/FAIL line per target."""
    print(
        "\nmedians over the rounds (cpu = this process, user+sys; server and others = "
        "share of one core; others = other processes on the benchmark cores)"
    )
    print(
        f"{'contender':<20}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'cpu ms/req':>12}{'client':>8}{'server':>8}{'others':>8}{'failed':>8}"
    )
    for c in concurrencies:
        for name in contenders:
            m = summary[name][str(c)]
            print(
                f"{name:<20}{c:>5}{m['requests_per_s']:>9,.0f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}"
                f"{m['client_cpu_ms_per_request']:>12.3f}{m['client_cpu_utilisation']:>8.0%}"
                f"{m['server_cpu_utilisation']:>8.0%}{m['foreign_cpu_utilisation']:>8.0%}"
                f"{m['failures']:>8}"
            )
    print(
        "\nratios of requests/s: ratio of medians (each round's ratio) [CPU per request, theirs/ours]"
    )
    for c in concurrencies:
        for k, v in ratio[str(c)].items():
            rounds = " ".join(f"{r:.2f}" for r in v["per_round"])
            print(f"  c={c:<3} {k} = {v['ratio_of_medians']:.2f} ({rounds}) [{v['cpu_ratio']:.2f}]")
    for t in targets:
        verdict = "PASS" if t["passed"] else "FAIL"
        print(
            f"{verdict}: {t['name']} at concurrency {t['concurrency']} = {t['measured']:.3g} "
            f"(target >= {t['minimum']:g})"
        )


def too_many_failures(summary: dict) -> list:
    """(contender, concurrency, failed, requests) wherever more than
    FAILURE_TOLERANCE of the requests failed: such figures mean little."""
    bad = []
    for name, by_c in summary.items():
        for c, m in by_c.items():
            if m["failures"] > FAILURE_TOLERANCE * m["requests"]:
                bad.append((name, c, m["failures"], m["requests"]))
    return bad


def exit_status(summary: dict, targets: list, strict: bool) -> int:
    """1 when a contender failed too many requests (said on stderr), else 2
    when ``strict`` and a target was missed, else 0."""
    bad = too_many_failures(summary)
    for name, c, failed, total in bad:
        print(
            f"{name} at concurrency {c}: {failed} of {total} requests failed; its figures mean little",
            file=sys.stderr,
        )
    if bad:
        return 1
    return 2 if strict and not all(t["passed"] for t in targets) else 0


# ------------------------------------------------------------------ peers


def quiet_litellm() -> Any:
    """litellm, with its telemetry, debug output and chatty loggers off."""
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.turn_off_message_logging = True
    for logger in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    return litellm


async def close_litellm() -> None:
    """Close the HTTP clients LiteLLM cached, if it was used at all."""
    if "litellm" in sys.modules:
        await sys.modules["litellm"].close_litellm_async_clients()


def litellm_logging_flush() -> Callable[[], Awaitable[None]] | None:
    """The flush of LiteLLM's logging queue; None in versions without one."""
    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
    except ImportError:
        return None
    return getattr(GLOBAL_LOGGING_WORKER, "flush", None)


def run_in_new_loop(main: Awaitable[Any]) -> Any:
    """Run ``main`` to its end on a fresh (uv)loop, its async generators shut down, the loop closed."""
    loop = new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def run_script(main: Callable[[], int]) -> None:
    """A benchmark script's entry point: exit with ``main()``'s status; Ctrl-C
    exits 130 (the simulator was already stopped by main()'s own ``with``)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
