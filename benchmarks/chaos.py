"""Chaos soak: N requests of every kind against a simulator that misbehaves, then an audit.

One ``openai_api`` client (two keys, breaker, retries, priority queue, batching,
stats) sends N requests (default 100,000) to the in-process simulator, mixed
at random from a seed: sync calls from threads, async calls, streams read to
the end, streams abandoned half way (closed, or dropped unclosed), batched
embeddings, futures from ``queue_with_priority`` (waited, cancelled), tasks
cancelled, calls given a deadline of the caller's own (``wait_for``,
``result(timeout)``), calls waiting for the circuit, at random priorities and
per-call timeouts.  Meanwhile the simulator's weather changes every
``period`` requests: calm, 5xx bursts, 429 storms whose Retry-After escalates
past what the client believes, connection resets, hangs (longer than any
timeout, so only the client's timeouts end them), malformed bodies, and cut,
stalled or malformed streams.

Then it asserts, from what the callers saw, from the client's counters
(``get_stats()``, ``generate_report()``) and from the simulator's own counters
and request log (``Simulator.log_requests``: one line per request, tagged with
the request's number through an ``extra_headers`` header):

* every request completed exactly once: none lost (a caller never answered),
  none completed twice (a future's callbacks, the caller's outcome, and the
  engine's request counts, which would exceed N);
* every request either succeeded (its answer checked against what the
  simulator makes of its own prompt or input) or failed with a typed error
  of ``ipfs_accelerate_py`` that this weather can cause, or was cancelled by
  its own caller;
* the simulator agrees: it saw exactly the client's HTTP attempts, none for a
  request that does not exist, at most ``1 + max_retries`` per request; each
  success had a clean 200 from it, each completed stream was finished by it;
* nothing leaked: queue, in-flight attempts, backing-off requests, breaker
  half-open probes, key leases all zero; the engine loop's tasks back to
  their count before the run; sockets back to their count before the client
  once it is closed; no ERROR logged by the client or asyncio;
* memory is flat: RSS grew less than 10% between 20% of the run and its end
  (checked from 50,000 requests; smaller runs report it only).

It prints a table, writes ``--json`` and exits 1 naming each failed assertion
(0 when all hold).

    python benchmarks/chaos.py                       # 100,000 requests (minutes)
    python benchmarks/chaos.py --quick --json out.json   # 5,000 requests (seconds)
    python benchmarks/chaos.py --requests 20000 --seed 7 --window 256 --switch-interval 1e-5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import math
import os
import platform
import queue
import random
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the checkout's package first
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.engine.loop import engine_loop
from ipfs_accelerate_py.resilience.errors import (
    ApiError,
    CancelledRequestError,
    CircuitOpenError,
    MalformedResponseError,
    NetworkError,
    QueueFullError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
)
from ipfs_accelerate_py.simulator import Simulator, embedding_for
from ipfs_accelerate_py.simulator.request_log import read_log

DEFAULT_REQUESTS = 100_000
QUICK_REQUESTS = 5_000
DEFAULT_SEED = 15
RSS_MARK_SHARE = 0.2  # RSS is read at 20% of the run and at its end
RSS_GROWTH_LIMIT = 0.10
RSS_CHECK_FROM = 50_000  # smaller runs report the growth without asserting it
TAG_HEADER = "x-chaos-tag"
CHAT_MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"
EMBED_DIMENSIONS = 16  # the simulator's default length
REPLY_PREFIX = "Simulated reply to: "
WINDOW = 96  # requests outstanding at once, from threads and tasks together
THREADS = 16
MIN_PERIOD = 150  # requests per weather phase, at least
PHASES_PER_RUN = 40  # about this many phases in a run (never shorter than MIN_PERIOD each)
HANG_SECONDS = 5.0  # longer than every timeout below: only the client ends a hang
STALL_SECONDS = 2.0
SETTLE_SECONDS = 10.0  # how long the end waits for sockets, tasks and the server to settle
SETTLE_STEP = 0.05
LOST_GRACE = 20.0  # after the last request is sent: what is still unanswered then is lost
CANCEL_DELAY = 0.005  # a cancelled request is cancelled within this many seconds
CALLER_DEADLINE = (0.002, 0.25)  # seconds a caller's own deadline may give a call
PER_CALL_TIMEOUT = 0.2  # a per-call `timeout=` on some calls (the client's own is below)
MAX_RETRIES = 2
API_KEYS = (("alpha", "sk-chaos-alpha-0123456789"), ("beta", "sk-chaos-beta-0123456789"))
CLIENT_SETTINGS: dict[str, Any] = {
    "max_concurrent_requests": 32,
    "queue_size": 48,  # under WINDOW: a full queue happens, and is a typed error
    "max_retries": MAX_RETRIES,
    "initial_retry_delay": 0.005,
    "backoff_factor": 2.0,
    "max_retry_delay": 0.05,
    "max_retry_after": 0.3,  # the storms escalate past it
    "retry_jitter": 0.25,
    "timeout": 0.3,
    "stream_stall_timeout": 0.2,
    "request_deadline": 0.8,  # hangs and storms outlast it
    "failure_threshold": 10,
    "reset_timeout": 0.02,
    "half_open_max_requests": 2,
    "batch_timeout": 0.01,
    "max_batch_size": 8,
}
SIM_BASE: dict[str, Any] = {
    "hang_seconds": HANG_SECONDS,
    "stall_seconds": STALL_SECONDS,
    "latency_jitter": 0.01,  # 0-10 ms: cancels and deadlines often land mid-attempt
}
CALM: dict[str, Any] = {
    "error_rate": 0.0,
    "drop_rate": 0.0,
    "hang_rate": 0.0,
    "malformed_rate": 0.0,
    "stream_cut_after": None,
    "stream_stall_after": None,
    "stream_malformed_after": None,
    "outage": False,
    "script": [],
}
ERROR_STATUSES = (500, 502, 503, 504)
CYCLE_LENGTH = 12  # phases in one turn of the weather (see weather())
STORM_STEPS_MS = (5, 10, 20, 40, 80, 160, 320, 640, 1280)  # past max_retry_after from 320
EXPECTED_ERRORS: tuple[type[ApiError], ...] = (
    RateLimitError,
    ServerError,
    MalformedResponseError,
    RequestTimeoutError,  # StreamStalledError, DeadlineExceededError
    NetworkError,
    CircuitOpenError,
    QueueFullError,
    CancelledRequestError,
)
"""What this weather and these callers can cause; any other error is a finding."""

# What a caller saw, once (the outcome codes of OutcomeLog.outcome).
PENDING, OK, API_ERROR, CALLER_CANCELLED, CLOSED, UNTYPED, WRONG = range(7)
OUTCOME_NAMES = (
    "lost",
    "ok",
    "typed error",
    "caller cancelled",
    "closed early",
    "untyped",
    "wrong",
)


@dataclass(frozen=True)
class Kind:
    """One way of calling: ``runs`` in a worker thread or an asyncio task."""

    name: str
    weight: float
    runs: str  # "thread" or "task"
    tagged: bool = True  # sends TAG_HEADER (embeddings do not: a tag would keep them unbatched)
    caller_cancels: bool = False  # its caller may cancel it: CALLER_CANCELLED, CLOSED and
    # CancelledRequestError are allowed (for any other kind they are a finding)
    future: bool = False  # a RequestFuture whose callbacks are counted
    stream: bool = False


KINDS: tuple[Kind, ...] = (
    Kind("sync chat", 0.16, "thread"),
    Kind("async chat", 0.16, "task"),
    Kind("sync stream", 0.06, "thread", stream=True),
    Kind("async stream", 0.06, "task", stream=True),
    Kind("stream closed half way", 0.04, "thread", caller_cancels=True, stream=True),
    Kind("async stream closed half way", 0.04, "task", caller_cancels=True, stream=True),
    Kind("stream dropped unclosed", 0.02, "thread", caller_cancels=True, stream=True),
    Kind("sync embeddings", 0.07, "thread", tagged=False),
    Kind("async embeddings", 0.07, "task", tagged=False),
    Kind("future waited", 0.07, "thread", future=True),
    Kind("async future awaited", 0.05, "task", future=True),
    Kind("future cancelled", 0.05, "thread", caller_cancels=True, future=True),
    Kind("task cancelled", 0.04, "task", caller_cancels=True),
    Kind("future with a deadline", 0.03, "thread", caller_cancels=True, future=True),
    Kind("task with a deadline", 0.04, "task", caller_cancels=True),
    Kind("sync chat waiting for the circuit", 0.02, "thread"),
    Kind("async chat waiting for the circuit", 0.02, "task"),
)


# ------------------------------------------------------------------ the outcome log


class OutcomeLog:
    """What each request's caller saw, in preallocated arrays (memory flat while it runs).

    ``record`` is called once per caller outcome, ``future_done`` once per
    callback of a request's future; both count, so a second call is seen."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.kind = bytearray(n)
        self.outcome = bytearray(n)
        self.completions = bytearray(n)
        self.future_callbacks = bytearray(n)
        self.uses_future = bytearray(n)
        self.error = array("H", bytes(2 * n))
        self.error_names: list[str] = [""]
        self._error_index: dict[str, int] = {}
        self._lock = threading.Lock()

    def _error_code(self, name: str) -> int:
        code = self._error_index.get(name)
        if code is None:
            code = self._error_index[name] = len(self.error_names)
            self.error_names.append(name)
        return code

    def record(self, i: int, outcome: int, error: BaseException | None = None) -> None:
        with self._lock:
            count = self.completions[i]
            self.completions[i] = min(255, count + 1)
            if count:
                return  # the first outcome stands; the count tells the audit
            self.outcome[i] = outcome
            if error is not None:
                self.error[i] = self._error_code(type(error).__name__)

    def future_done(self, i: int) -> None:
        with self._lock:
            self.future_callbacks[i] = min(255, self.future_callbacks[i] + 1)

    def error_name(self, i: int) -> str:
        return self.error_names[self.error[i]]


@dataclass
class Assertion:
    name: str
    ok: bool
    detail: str


def _ids(ids: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return f"{len(ids)} (request {shown}{more})" if ids else "0"


def expected_error_names() -> set[str]:
    """The names of EXPECTED_ERRORS and of every subclass of theirs."""
    names: set[str] = set()
    todo: list[type[BaseException]] = list(EXPECTED_ERRORS)
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def check_outcomes(log: OutcomeLog, kinds: tuple[Kind, ...] = KINDS) -> list[Assertion]:
    """The callers' side: nothing lost, nothing twice, nothing untyped or wrong."""
    lost, twice, untyped, wrong, uninvited, unexpected = [], [], [], [], [], []
    unexpected_names: Counter[str] = Counter()
    expected = expected_error_names()
    cancelled_error = CancelledRequestError.__name__
    for i in range(log.n):
        kind = kinds[log.kind[i]]
        outcome = log.outcome[i]
        future = log.uses_future[i]
        if log.completions[i] == 0 or (future and log.future_callbacks[i] == 0):
            lost.append(i)
        if log.completions[i] > 1 or log.future_callbacks[i] > 1:
            twice.append(i)
        if log.completions[i] == 0:
            continue
        if outcome == UNTYPED:
            untyped.append(i)
        elif outcome == WRONG:
            wrong.append(i)
        elif not kind.caller_cancels and (
            outcome in (CALLER_CANCELLED, CLOSED) or log.error_name(i) == cancelled_error
        ):
            uninvited.append(i)
        elif outcome == API_ERROR and log.error_name(i) not in expected:
            unexpected.append(i)
            unexpected_names[log.error_name(i)] += 1
    return [
        Assertion("no future lost", not lost, f"unanswered: {_ids(lost)}"),
        Assertion("none completed twice", not twice, f"completed more than once: {_ids(twice)}"),
        Assertion(
            "every failure is a typed error",
            not untyped,
            f"failed with an exception not from ipfs_accelerate_py: {_ids(untyped)}",
        ),
        Assertion(
            "every success is its own answer",
            not wrong,
            f"wrong or mixed-up answers: {_ids(wrong)}",
        ),
        Assertion(
            "cancelled only by its caller",
            not uninvited,
            f"cancelled though its caller never cancelled: {_ids(uninvited)}",
        ),
        Assertion(
            "errors are the ones this weather causes",
            not unexpected,
            f"other typed errors: {_ids(unexpected)} {dict(unexpected_names)}",
        ),
    ]


def tally(log: OutcomeLog) -> dict[str, int]:
    """Callers' outcomes in the engine's terms: ok, failed, cancelled (and how sure)."""
    ok = failed = cancelled = loose = 0
    cancelled_error = CancelledRequestError.__name__
    for i in range(log.n):
        outcome = log.outcome[i]
        if log.completions[i] == 0:
            continue
        if outcome == OK:
            ok += 1
        elif outcome == API_ERROR:
            if log.error_name(i) == cancelled_error:
                cancelled += 1
            else:
                failed += 1
        elif outcome in (CALLER_CANCELLED, CLOSED):
            loose += 1  # the engine may have finished it either way first
    return {"ok": ok, "failed": failed, "cancelled": cancelled, "caller_ended": loose}


def check_engine_counts(log: OutcomeLog, stats: Mapping[str, Any]) -> list[Assertion]:
    """The engine's request counts against the callers': every request counted once."""
    ours = tally(log)
    total = int(stats["total_requests"])
    succ, fail, canc = (
        int(stats["successful_requests"]),
        int(stats["failed_requests"]),
        int(stats["cancelled_requests"]),
    )
    slack = (succ - ours["ok"]) + (fail - ours["failed"]) + (canc - ours["cancelled"])
    counted_once = total == log.n and succ + fail + canc == total
    agrees = (
        succ >= ours["ok"]
        and fail >= ours["failed"]
        and canc >= ours["cancelled"]
        and slack == ours["caller_ended"]
    )
    return [
        Assertion(
            "engine counted each request once",
            counted_once,
            f"engine total {total} (ok {succ} + failed {fail} + cancelled {canc}) for {log.n} requests",
        ),
        Assertion(
            "engine outcomes match the callers'",
            agrees,
            f"engine ok/failed/cancelled {succ}/{fail}/{canc}; callers {ours['ok']}/"
            f"{ours['failed']}/{ours['cancelled']} and {ours['caller_ended']} ended by the caller",
        ),
    ]


def check_sim_log(
    lines: Iterable[Mapping[str, Any]],
    log: OutcomeLog,
    http_attempts: int,
    cancelled: int,
    kinds: tuple[Kind, ...] = KINDS,
    max_attempts: int = 1 + MAX_RETRIES,
) -> tuple[list[Assertion], dict[str, Any]]:
    """The simulator's side, request by request (its log) against the callers' outcomes.

    The client counts an HTTP attempt when it ends with an answer or an error;
    one aborted by its request's cancellation is not counted, so the server
    may have seen up to one more attempt per cancelled request, never fewer."""
    seen = bytearray(log.n)
    clean = bytearray(log.n)  # a 200 with no fault
    finished = bytearray(log.n)  # a stream the server finished, no fault
    phantom: list[int | str] = []
    total = 0
    for line in lines:
        total += 1
        tag = line.get("tag")
        if tag is None:
            continue
        try:
            i = int(tag)
        except ValueError:
            phantom.append(tag)
            continue
        if not 0 <= i < log.n or not kinds[log.kind[i]].tagged:
            phantom.append(i)
            continue
        seen[i] = min(255, seen[i] + 1)
        if line.get("status") == 200 and not line.get("faults"):
            clean[i] = 1
            if line.get("stream_finished"):
                finished[i] = 1
    too_many, unserved, unfinished = [], [], []
    for i in range(log.n):
        kind = kinds[log.kind[i]]
        if not kind.tagged:
            continue
        if seen[i] > max_attempts:
            too_many.append(i)
        if log.outcome[i] == OK and log.completions[i]:
            if not clean[i]:
                unserved.append(i)
            elif kind.stream and not finished[i]:
                unfinished.append(i)
    figures = {"log_lines": total, "tagged_requests_seen": sum(1 for s in seen if s)}
    return [
        Assertion(
            "server saw the client's attempts (and those cancels aborted)",
            http_attempts <= total <= http_attempts + cancelled,
            f"{total} requests in the server's log; the client counted {http_attempts} HTTP "
            f"attempts and {cancelled} cancelled requests",
        ),
        Assertion("server saw no phantom request", not phantom, f"unknown tags: {phantom[:8]}"),
        Assertion(
            f"at most {max_attempts} attempts per request at the server",
            not too_many,
            f"more: {_ids(too_many)}",
        ),
        Assertion(
            "every success had a clean 200 from the server",
            not unserved,
            f"successes the server never answered cleanly: {_ids(unserved)}",
        ),
        Assertion(
            "every completed stream was finished by the server",
            not unfinished,
            f"streams completed at the client, cut at the server: {_ids(unfinished)}",
        ),
    ], figures


# ------------------------------------------------------------------ the process


def rss_bytes() -> int:
    """VmRSS of this process, after a collection and handing freed heap back."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only; not ctypes.util.find_library,
        ctypes.CDLL(None).malloc_trim(0)  # which runs a subprocess (an fd, a fork) mid-run
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_sockets() -> int:
    """Sockets this process holds (client and in-process server alike)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
    return count


def open_fds() -> int:
    """File descriptors this process holds (sockets, files, pipes)."""
    return len(os.listdir("/proc/self/fd"))


def engine_loop_tasks() -> int:
    """Tasks alive on the client's engine loop (not counting the one asking)."""

    async def count() -> int:
        return len(asyncio.all_tasks()) - 1

    return asyncio.run_coroutine_threadsafe(count(), engine_loop().loop).result(5.0)


def settle(read: Callable[[], int], target: int, seconds: float = SETTLE_SECONDS) -> int:
    """Read ``read()`` until it is at most ``target`` or ``seconds`` pass; the last value."""
    end = time.monotonic() + seconds
    value = read()
    while value > target and time.monotonic() < end:
        time.sleep(SETTLE_STEP)
        value = read()
    return value


class ErrorLogCounter(logging.Handler):
    """Counts ERROR records of the client and of asyncio (a callback or task that raised)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < 20:
            self.records.append(f"{record.name}: {record.getMessage()[:200]}")
        else:
            self.records.append("")


# ------------------------------------------------------------------ the weather


def weather(phase: int) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Phase ``phase``'s name, scenario fields, and script (the 429 storm's)."""
    status = ERROR_STATUSES[(phase // CYCLE_LENGTH) % len(ERROR_STATUSES)]  # next cycle, next 5xx
    cycle: list[tuple[str, dict[str, Any]]] = [
        ("calm", {}),
        (f"{status} burst", {"error_rate": 0.4, "error_status": status}),
        ("429 storm", {}),
        ("connection resets", {"drop_rate": 0.15}),
        ("outage", {"outage": True}),
        ("calm", {}),  # the circuit closes again before the hangs
        ("hangs", {"hang_rate": 0.08}),
        ("malformed bodies", {"malformed_rate": 0.2}),
        ("cut streams", {"stream_cut_after": 2}),
        ("stalled streams", {"stream_stall_after": 2}),
        ("malformed streams", {"stream_malformed_after": 3}),
        (
            "everything at once",
            {
                "error_rate": 0.05,
                "error_status": status,
                "drop_rate": 0.05,
                "hang_rate": 0.03,
                "malformed_rate": 0.05,
                "stream_cut_after": 4,
            },
        ),
    ]
    assert len(cycle) == CYCLE_LENGTH
    name, fields = cycle[phase % CYCLE_LENGTH]
    script: list[dict[str, Any]] = []
    if name == "429 storm":
        for step, ms in enumerate(STORM_STEPS_MS):
            header = (
                {"retry-after-ms": str(ms)} if step % 2 == 0 else {"retry-after": f"{ms / 1000:g}"}
            )
            script.extend({"status": 429, "headers": header} for _ in range(12))
    return name, {**CALM, **fields}, script


# ------------------------------------------------------------------ the requests


def prompt_of(i: int, kind: Kind) -> str:
    return f"chaos {i} {kind.name}"[:60]


def messages_of(i: int, kind: Kind) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt_of(i, kind)}]


def reply_is_ours(reply: Any, i: int, kind: Kind) -> bool:
    try:
        text = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return False
    return bool(text == REPLY_PREFIX + prompt_of(i, kind))


def embedding_inputs(i: int, rng: random.Random) -> list[str]:
    return [f"chaos {i} text {j}" for j in range(rng.randint(1, 3))]


def embeddings_are_ours(reply: Any, texts: list[str]) -> bool:
    try:
        data = sorted(reply["data"], key=lambda item: item["index"])
        if len(data) != len(texts):
            return False
        return all(
            all(
                math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)
                for a, b in zip(
                    item["embedding"], embedding_for(text, EMBED_DIMENSIONS), strict=True
                )
            )
            for item, text in zip(data, texts, strict=True)
        )
    except (KeyError, IndexError, TypeError, ValueError):
        return False


@dataclass
class Plan:
    """Request ``i``'s kind, priority and options, drawn once from the seed."""

    kind: int
    priority: str
    timeout: float | None
    delay: float  # before a cancel, or a caller's deadline
    texts: list[str] = field(default_factory=list)


class Chaos:
    """The run: the client, the simulator, the callers, the audit."""

    def __init__(
        self,
        requests: int,
        seed: int,
        workdir: Path,
        *,
        window: int = WINDOW,
        threads: int = THREADS,
    ) -> None:
        self.n = requests
        self.seed = seed
        self.window_size = window
        self.thread_count = threads
        self.rng = random.Random(seed)
        self.log = OutcomeLog(requests)
        self.period = max(MIN_PERIOD, requests // PHASES_PER_RUN)
        self.phases: Counter[str] = Counter()
        self.workdir = workdir
        self.sim_log_path = workdir / "simulator-requests.jsonl"
        self.sim = Simulator({**SIM_BASE, "seed": seed}).start()
        self.client: Any = None
        self.jobs: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.window: asyncio.Semaphore | None = None
        self.outstanding = 0
        self.drained: asyncio.Event | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.plans: dict[int, Plan] = {}
        self.figures: dict[str, Any] = {}
        self.assertions: list[Assertion] = []
        self.errors = ErrorLogCounter()
        self.giving_up = False
        self.ok_inputs = 0  # embedding inputs returned to their callers, checked
        self.inputs_lock = threading.Lock()

    # -- set-up --------------------------------------------------------------------

    def make_client(self) -> Any:
        metadata = {
            "openai_api_base": self.sim.base_url,
            "api_keys": [{"name": name, "key": key} for name, key in API_KEYS],
            "supported_batch_models": [EMBED_MODEL],
            **CLIENT_SETTINGS,
        }
        return openai_api(resources={}, metadata=metadata)

    def plan(self, i: int) -> Plan:
        rng = self.rng
        kind_index = rng.choices(range(len(KINDS)), weights=[k.weight for k in KINDS])[0]
        kind = KINDS[kind_index]
        return Plan(
            kind=kind_index,
            priority=rng.choice(("high", "normal", "low")),
            timeout=PER_CALL_TIMEOUT if rng.random() < 0.25 else None,
            delay=rng.uniform(*CALLER_DEADLINE)
            if "deadline" in kind.name
            else rng.uniform(0, CANCEL_DELAY),
            texts=embedding_inputs(i, rng) if "embeddings" in kind.name else [],
        )

    def options(self, i: int, plan: Plan, kind: Kind) -> dict[str, Any]:
        out: dict[str, Any] = {"priority": plan.priority}
        if kind.tagged:
            out["extra_headers"] = {TAG_HEADER: str(i)}
        if plan.timeout is not None:
            out["timeout"] = plan.timeout
        if "circuit" in kind.name:
            out["on_circuit_open"] = "wait"
        return out

    def request_info(self, i: int, kind: Kind) -> dict[str, Any]:
        return {
            "endpoint": "chat/completions",
            "data": {"model": CHAT_MODEL, "messages": messages_of(i, kind)},
        }

    def tagged_view(self, i: int) -> Any:
        return self.client.with_options(extra_headers={TAG_HEADER: str(i)})

    # -- one request -------------------------------------------------------------------

    def outcome_of_result(self, i: int, kind: Kind, reply: Any, texts: list[str]) -> None:
        good = embeddings_are_ours(reply, texts) if texts else reply_is_ours(reply, i, kind)
        if good and texts:
            with self.inputs_lock:
                self.ok_inputs += len(texts)
        self.log.record(i, OK if good else WRONG)

    def outcome_of_error(self, i: int, error: BaseException) -> None:
        self.log.record(i, API_ERROR if isinstance(error, ApiError) else UNTYPED, error)

    def watch(self, i: int, future: Any) -> Any:
        self.log.uses_future[i] = 1
        future.add_done_callback(lambda _f: self.log.future_done(i))
        return future

    def run_thread_request(self, i: int) -> None:
        plan = self.plans.pop(i)
        kind = KINDS[plan.kind]
        client = self.client
        opts = self.options(i, plan, kind)
        try:
            if kind.name.startswith("sync chat"):
                reply = client.chat(CHAT_MODEL, messages_of(i, kind), **opts)
                self.outcome_of_result(i, kind, reply, [])
            elif kind.name == "sync stream":
                with client.chat(CHAT_MODEL, messages_of(i, kind), stream=True, **opts) as stream:
                    text = "".join(chunk.text or "" for chunk in stream)
                self.log.record(i, OK if text == REPLY_PREFIX + prompt_of(i, kind) else WRONG)
            elif kind.name == "stream closed half way":
                stream = client.chat(CHAT_MODEL, messages_of(i, kind), stream=True, **opts)
                with stream:
                    next(iter(stream))
                self.log.record(i, CLOSED)
            elif kind.name == "stream dropped unclosed":
                stream = client.chat(CHAT_MODEL, messages_of(i, kind), stream=True, **opts)
                next(iter(stream))
                del stream  # its finaliser must free the slot and key
                self.log.record(i, CLOSED)
            elif kind.name == "sync embeddings":
                reply = client.embeddings(EMBED_MODEL, plan.texts, priority=plan.priority)
                self.outcome_of_result(i, kind, reply, plan.texts)
            else:
                self.run_thread_future(i, plan, kind)
        except Exception as error:  # every failure is recorded, typed or not
            self.outcome_of_error(i, error)

    def run_thread_future(self, i: int, plan: Plan, kind: Kind) -> None:
        view = self.tagged_view(i)
        future = self.watch(i, view.queue_with_priority(self.request_info(i, kind), plan.priority))
        if kind.name == "future cancelled":
            time.sleep(plan.delay)
            future.cancel()
        elif kind.name == "future with a deadline":
            try:
                future.result(timeout=plan.delay)
            except TimeoutError:
                future.cancel()
            except Exception:
                pass  # its outcome is read below
        if not future.wait(LOST_GRACE):
            return  # never answered: the audit finds it lost
        error = future["error"]
        if error is not None:
            self.outcome_of_error(i, error)
        else:
            self.outcome_of_result(i, kind, future["result"], [])

    async def run_task_request(self, i: int) -> None:
        plan = self.plans.pop(i)
        kind = KINDS[plan.kind]
        client = self.client
        opts = self.options(i, plan, kind)
        try:
            if kind.name.startswith("async chat"):
                reply = await client.achat(CHAT_MODEL, messages_of(i, kind), **opts)
                self.outcome_of_result(i, kind, reply, [])
            elif kind.name == "async stream":
                stream = await client.achat(CHAT_MODEL, messages_of(i, kind), stream=True, **opts)
                async with stream:
                    text = "".join([chunk.text or "" async for chunk in stream])
                self.log.record(i, OK if text == REPLY_PREFIX + prompt_of(i, kind) else WRONG)
            elif kind.name == "async stream closed half way":
                stream = await client.achat(CHAT_MODEL, messages_of(i, kind), stream=True, **opts)
                async with stream:
                    await stream.__anext__()
                self.log.record(i, CLOSED)
            elif kind.name == "async embeddings":
                reply = await client.aembeddings(EMBED_MODEL, plan.texts, priority=plan.priority)
                self.outcome_of_result(i, kind, reply, plan.texts)
            elif kind.name == "async future awaited":
                future = self.watch(
                    i,
                    self.tagged_view(i).aqueue_with_priority(
                        self.request_info(i, kind), plan.priority
                    ),
                )
                self.outcome_of_result(i, kind, await future, [])
            elif kind.name == "task cancelled":
                await self.cancelled_task(i, kind, plan, opts)
            elif kind.name == "task with a deadline":
                call = client.achat(CHAT_MODEL, messages_of(i, kind), **opts)
                try:
                    reply = await asyncio.wait_for(call, plan.delay)
                except asyncio.TimeoutError:
                    self.log.record(i, CALLER_CANCELLED)
                else:
                    self.outcome_of_result(i, kind, reply, [])
            else:
                raise AssertionError(f"no task runs {kind.name!r}")
        except asyncio.CancelledError as error:
            if self.giving_up:
                raise  # the run ended with this request unanswered: it stays lost
            self.outcome_of_error(i, error)  # a caller that never cancelled was cancelled
        except Exception as error:  # every failure is recorded, typed or not
            self.outcome_of_error(i, error)

    async def cancelled_task(self, i: int, kind: Kind, plan: Plan, opts: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self.client.achat(CHAT_MODEL, messages_of(i, kind), **opts))
        await asyncio.sleep(plan.delay)
        task.cancel()
        try:
            reply = await task
        except asyncio.CancelledError:
            self.log.record(i, CALLER_CANCELLED)
        else:
            self.outcome_of_result(i, kind, reply, [])

    # -- the driver --------------------------------------------------------------------

    def thread_main(self) -> None:
        while True:
            i = self.jobs.get()
            if i is None:
                return
            try:
                self.run_thread_request(i)
            finally:
                loop = self.loop
                if loop is not None:
                    with contextlib.suppress(RuntimeError):  # the driver gave up on it
                        loop.call_soon_threadsafe(self.one_done)

    def one_done(self) -> None:
        self.outstanding -= 1
        assert self.window is not None and self.drained is not None
        self.window.release()
        if self.outstanding == 0:
            self.drained.set()

    async def drain(self, seconds: float) -> bool:
        assert self.drained is not None
        if self.outstanding == 0:
            return True
        self.drained.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.drained.wait(), seconds)
        return self.outstanding == 0

    async def drive(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.window = asyncio.Semaphore(self.window_size)
        self.drained = asyncio.Event()
        mark = max(1, int(self.n * RSS_MARK_SHARE))
        phase = -1
        started = time.perf_counter()
        for i in range(self.n):
            if i // self.period != phase:
                phase = i // self.period
                name, fields, script = weather(phase)
                self.sim.configure(fields)
                if script:
                    self.sim.script(script)
                self.phases[name] += 1
            if i == mark:
                drained = await self.drain(LOST_GRACE)
                self.figures["rss_at_mark"] = rss_bytes() if drained else None
                self.figures["rss_mark_requests"] = mark
            plan = self.plan(i)
            self.plans[i] = plan
            self.log.kind[i] = plan.kind
            await self.window.acquire()
            self.outstanding += 1
            if KINDS[plan.kind].runs == "thread":
                self.jobs.put(i)
            else:
                task = asyncio.create_task(self.run_task_request(i))
                self.tasks.add(task)
                task.add_done_callback(self.task_done)
        self.figures["sent_seconds"] = time.perf_counter() - started
        self.sim.configure(CALM)
        drained = await self.drain(LOST_GRACE)
        self.figures["wall_seconds"] = time.perf_counter() - started
        self.figures["drained"] = drained
        self.figures["driver_tasks_left"] = len(asyncio.all_tasks()) - 1
        self.giving_up = True
        for task in list(self.tasks):
            task.cancel()  # only the lost ones are left; they stay counted as lost

    def task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.one_done()

    # -- the run -----------------------------------------------------------------------

    def run(self) -> None:
        watched = [logging.getLogger("ipfs_accelerate_py"), logging.getLogger("asyncio")]
        for logger in watched:
            logger.addHandler(self.errors)
        try:
            self.run_measured()
        finally:
            for logger in watched:
                logger.removeHandler(self.errors)
            self.sim.stop()

    def warm_up(self, client: Any) -> None:
        warm = client.chat(CHAT_MODEL, [{"role": "user", "content": "warm-up"}])
        if not warm["choices"][0]["message"]["content"].startswith(REPLY_PREFIX):
            raise RuntimeError("the warm-up request got an unexpected answer")

    def run_measured(self) -> None:
        # A first client makes one request and closes, so what the process sets
        # up once (the engine loop, the resolver's descriptors) is in the baselines.
        sockets_idle = open_sockets()
        first = self.make_client()
        self.warm_up(first)
        first.close()
        sockets_before_client = settle(open_sockets, sockets_idle)
        self.figures["fds_before_client"] = open_fds()
        self.client = self.make_client()
        self.warm_up(self.client)
        tasks_before = engine_loop_tasks()
        stats_before = self.client.get_stats()
        self.client.reset_stats()
        self.sim.reset(scenario=False)
        self.sim.log_requests(self.sim_log_path, tag_header=TAG_HEADER)
        self.threads = [
            threading.Thread(target=self.thread_main, name=f"chaos-{n}", daemon=True)
            for n in range(self.thread_count)
        ]
        for thread in self.threads:
            thread.start()
        rss_start = rss_bytes()
        asyncio.run(self.drive())
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join(1.0)
        gc.collect()  # a stream dropped in a reference cycle is finalised now
        self.figures.update(
            rss_start=rss_start,
            rss_end=rss_bytes() if self.figures["drained"] else None,
            threads_left=sum(thread.is_alive() for thread in self.threads),
        )
        self.audit(tasks_before, stats_before, sockets_before_client)

    def audit(self, tasks_before: int, stats_before: Any, sockets_before_client: int) -> None:
        client = self.client
        out = self.assertions
        out.extend(check_outcomes(self.log))
        stats = client.get_stats()
        self.figures["client_stats"] = {
            name: stats[name]
            for name in (
                "total_requests",
                "successful_requests",
                "failed_requests",
                "cancelled_requests",
                "rejected_requests",
                "total_attempts",
                "http_attempts",
                "total_retries",
                "errors_by_type",
                "streams",
                "batches",
            )
        }
        out.extend(check_engine_counts(self.log, stats))
        # leaks, with the client still open and idle
        report = settle_report(client)
        queue_report, breaker = report["queue"], report["circuit_breaker"]
        leases = {name: row["in_flight"] for name, row in report["key_pool"].items()}
        engine_tasks = settle(engine_loop_tasks, tasks_before)
        held = {
            "queued": queue_report["size"],
            "in_flight": queue_report["in_flight"],
            "backing_off": queue_report["backing_off"],
            "half_open_probes": breaker["half_open_in_flight"],
            "key_leases": sum(leases.values()),
        }
        self.figures["held_at_end"] = held
        self.figures["circuit_opened"] = breaker["times_opened"]
        out.append(
            Assertion(
                "no queue slot, permit, probe or lease held",
                not any(held.values()),
                f"held at the end: {held}, leases by key {leases}",
            )
        )
        out.append(
            Assertion(
                "engine loop tasks back to baseline",
                engine_tasks <= tasks_before,
                f"{engine_tasks} tasks on the engine loop, {tasks_before} before the run",
            )
        )
        out.append(
            Assertion(
                "no caller left running",
                self.figures["driver_tasks_left"] == 0 and self.figures["threads_left"] == 0,
                f"{self.figures['driver_tasks_left']} driver tasks, "
                f"{self.figures['threads_left']} worker threads still running",
            )
        )
        sockets_open_client = open_sockets()
        client.close()
        sockets_after = settle(open_sockets, sockets_before_client)
        self.figures.update(
            sockets_before_client=sockets_before_client,
            sockets_idle_client=sockets_open_client,
            sockets_after_close=sockets_after,
            engine_tasks_before=tasks_before,
            engine_tasks_after=engine_tasks,
            warm_up_requests=stats_before["total_requests"],
        )
        out.append(
            Assertion(
                "sockets back to baseline after close",
                sockets_after <= sockets_before_client,
                f"{sockets_after} sockets open after close, {sockets_before_client} before the client "
                f"({sockets_open_client} while it idled)",
            )
        )
        # the simulator's side
        sim_in_flight = settle(lambda: int(self.sim.counters()["in_flight"]), 0)
        counters = self.sim.counters()
        self.sim.log_requests(None)
        sim_checks, sim_figures = check_sim_log(
            read_log(self.sim_log_path),
            self.log,
            int(stats["http_attempts"]),
            int(stats["cancelled_requests"]),
        )
        out.append(
            Assertion(
                "server has nothing in flight",
                sim_in_flight == 0,
                f"{sim_in_flight} requests still being handled by the simulator",
            )
        )
        out.append(
            Assertion(
                "server's count matches its log",
                counters["requests_total"] == sim_figures["log_lines"],
                f"{counters['requests_total']} counted, {sim_figures['log_lines']} logged",
            )
        )
        out.extend(sim_checks)
        fds_before = self.figures["fds_before_client"]
        fds_after = self.figures["fds_after_close"] = settle(open_fds, fds_before)
        out.append(
            Assertion(
                "file descriptors back to baseline after close",
                fds_after <= fds_before,
                f"{fds_after} open after close and the log's end, {fds_before} before the client",
            )
        )
        served_inputs = int(counters["embedding_inputs"]["total"])
        ok_inputs = self.ok_inputs
        out.append(
            Assertion(
                "server embedded every input a caller got back",
                served_inputs >= ok_inputs,
                f"{served_inputs} inputs embedded by the server, {ok_inputs} returned to callers",
            )
        )
        self.figures["simulator"] = {
            "requests_total": counters["requests_total"],
            "by_status": counters["by_status"],
            "faults": {k: v for k, v in counters["faults"].items() if v},
            "client_disconnects": counters["client_disconnects"],
            "streams": counters["streams"],
            "embedding_calls": counters["embedding_inputs"]["calls"],
            "embedding_inputs": served_inputs,
            **sim_figures,
        }
        logged = [r for r in self.errors.records if r]
        out.append(
            Assertion(
                "nothing logged at ERROR",
                not self.errors.records,
                f"{len(self.errors.records)} ERROR records; first: {logged[:3]}",
            )
        )
        start, mark, end = (
            self.figures["rss_start"],
            self.figures.get("rss_at_mark"),
            self.figures["rss_end"],
        )
        growth = (end - mark) / mark if mark and end else None
        self.figures["rss_growth"] = growth
        if self.n >= RSS_CHECK_FROM:
            out.append(
                Assertion(
                    f"RSS grew under {RSS_GROWTH_LIMIT:.0%} from {RSS_MARK_SHARE:.0%} of the run",
                    growth is not None and growth < RSS_GROWTH_LIMIT,
                    f"RSS {_mb(mark)} at request {self.figures.get('rss_mark_requests')}, "
                    f"{_mb(end)} at the end ({_pct(growth)}); {_mb(start)} at the start",
                )
            )


def settle_report(client: Any) -> dict[str, Any]:
    """The client's report once nothing is queued, in flight or backing off (or SETTLE_SECONDS)."""
    end = time.monotonic() + SETTLE_SECONDS
    while True:
        report: dict[str, Any] = client.generate_report()
        queue_report = report["queue"]
        busy = queue_report["size"] or queue_report["in_flight"] or queue_report["backing_off"]
        if not busy or time.monotonic() >= end:
            return report
        time.sleep(SETTLE_STEP)


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f} MB"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


# ------------------------------------------------------------------ the report


def outcome_table(log: OutcomeLog) -> tuple[list[str], list[list[Any]]]:
    """Rows: each kind, its requests by outcome; a total row last."""
    columns = ["kind", "requests", *OUTCOME_NAMES]
    counts = [[0] * len(OUTCOME_NAMES) for _ in KINDS]
    for i in range(log.n):
        outcome = log.outcome[i] if log.completions[i] else PENDING
        counts[log.kind[i]][outcome] += 1
    rows: list[list[Any]] = [
        [kind.name, sum(row), *row] for kind, row in zip(KINDS, counts, strict=True) if sum(row)
    ]
    totals = [sum(row[c] for row in counts) for c in range(len(OUTCOME_NAMES))]
    rows.append(["all", sum(totals), *totals])
    return columns, rows


def errors_by_type(log: OutcomeLog) -> dict[str, int]:
    found: Counter[str] = Counter()
    for i in range(log.n):
        if log.completions[i] and log.outcome[i] in (API_ERROR, UNTYPED):
            found[log.error_name(i)] += 1
    return dict(found.most_common())


def render(chaos: Chaos, columns: list[str], rows: list[list[Any]]) -> str:
    widths = [max(len(str(row[c])) for row in [columns, *rows]) for c in range(len(columns))]
    lines = [
        "  ".join(
            str(v).rjust(w) if c else str(v).ljust(w)
            for c, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [columns, *rows]
    ]
    figures = chaos.figures
    lines += [
        "",
        f"errors by type (callers): {errors_by_type(chaos.log)}",
        f"weather phases ({chaos.period} requests each): {dict(chaos.phases)}",
        f"simulator: {json.dumps(figures.get('simulator', {}))}",
        f"held at the end: {figures.get('held_at_end')}; circuit opened "
        f"{figures.get('circuit_opened')} times",
        f"RSS: start {_mb(figures.get('rss_start'))}, at request {figures.get('rss_mark_requests')} "
        f"{_mb(figures.get('rss_at_mark'))}, end {_mb(figures.get('rss_end'))} "
        f"(growth {_pct(figures.get('rss_growth'))})",
        f"wall time: {figures.get('wall_seconds', 0.0):.1f} s for {chaos.n} requests",
        "",
    ]
    lines += [
        f"{'PASS' if a.ok else 'FAIL'} {a.name}" + ("" if a.ok else f": {a.detail}")
        for a in chaos.assertions
    ]
    return "\n".join(lines)


def document(
    chaos: Chaos, columns: list[str], rows: list[list[Any]], command: list[str]
) -> dict[str, Any]:
    failed = [a.name for a in chaos.assertions if not a.ok]
    figures = {k: v for k, v in chaos.figures.items() if not k.startswith("_")}
    return {
        "scenario": "chaos",
        "title": "Chaos soak: every kind of call against a misbehaving server, audited",
        "description": (__doc__ or "").strip().split("\n\n")[0],
        "settings": {
            "requests": chaos.n,
            "seed": chaos.seed,
            "period": chaos.period,
            "window": chaos.window_size,
            "threads": chaos.thread_count,
            "switch_interval": sys.getswitchinterval(),
            "client": CLIENT_SETTINGS,
            "keys": [name for name, _ in API_KEYS],
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "command": command,
        },
        "tables": [{"title": "Requests by kind and outcome", "columns": columns, "rows": rows}],
        "errors_by_type": errors_by_type(chaos.log),
        "phases": dict(chaos.phases),
        "figures": figures,
        "assertions": [vars(a) for a in chaos.assertions],
        "findings": [f"FAIL {name}" for name in failed]
        or [f"all {len(chaos.assertions)} assertions held over {chaos.n} requests"],
        "ok": not failed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=None, help=f"default {DEFAULT_REQUESTS}")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REQUESTS} requests")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--json", metavar="PATH", help="write the figures and assertions here")
    parser.add_argument(
        "--window", type=int, default=WINDOW, help=f"requests outstanding at once ({WINDOW})"
    )
    parser.add_argument(
        "--threads", type=int, default=THREADS, help=f"threads making sync calls ({THREADS})"
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="sys.setswitchinterval for the run (e.g. 1e-5: threads switch often, races show)",
    )
    args = parser.parse_args(argv)
    requests = args.requests or (QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS)
    if requests < 1 or args.window < 1 or args.threads < 1:
        parser.error("--requests, --window and --threads must be at least 1")
    if args.switch_interval is not None:
        if args.switch_interval <= 0:
            parser.error("--switch-interval must be above 0")
        sys.setswitchinterval(args.switch_interval)
    command = [sys.executable, *sys.argv] if argv is None else ["chaos.py", *argv]
    with tempfile.TemporaryDirectory(prefix="chaos-") as workdir:
        chaos = Chaos(requests, args.seed, Path(workdir), window=args.window, threads=args.threads)
        chaos.run()
    columns, rows = outcome_table(chaos.log)
    print(render(chaos, columns, rows), flush=True)
    doc = document(chaos, columns, rows, command)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(doc, out, indent=2)
    if not doc["ok"]:
        print(
            f"chaos: {len(doc['findings'])} assertion(s) failed, seed {args.seed}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # a lost request's thread may still be blocked; do not wait for it
