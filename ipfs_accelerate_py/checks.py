"""The feature checks: each advanced feature exercised for real against a server.

``ipfs-accelerate check`` and ``test_enhanced_api_features.py`` call
:func:`run_checks`.  Where the checks run:

* no key and no base URL: an embedded simulator of our own (port 0), started
  and stopped here;
* ``base_url`` (and/or ``key``): that server.  If its ``/_admin/counters``
  answers (given ``admin_token``, the simulator's admin token), it is a simulator and every check runs with fault injection and
  server-side assertions; otherwise the checks that need fault injection are
  reported ``SKIP`` and the others assert on what the client reports only.

Each check builds its own fresh client (closed after), asserts on what the
client reports and, against a simulator, on what the simulator counted.  A
check that raises is reported as ``FAIL`` with its exception; the others
still run.  The summary is printed and written to
``<api>_enhanced_features_<timestamp>.json``.  The API key is never printed
or written (text passes :func:`~.resilience.redact.redact`: a "key" shorter
than 8 characters is a placeholder and left alone).

Every backend in ``api_backends.BACKENDS`` is checked the same way: what a
check sends and reads is asked of the backend's wire adapter (its chat or
probe request, its reply text, usage and embedding vectors).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .api_backends import BACKENDS as BACKEND_CLASSES
from .api_backends import canonical_backend_name, describe_backend_names
from .api_backends.base import BaseApiBackend
from .api_backends.s3_kit import s3_kit
from .providers.base import ProviderSpec
from .resilience.errors import CircuitOpenError, QueueFullError, ServerError
from .resilience.redact import redact
from .simulator import Simulator, embedding_for

__all__ = [
    "BACKENDS",
    "CHECKS",
    "PLANNED_BACKENDS",
    "BackendEntry",
    "Check",
    "CheckFailed",
    "CheckResult",
    "CheckSkipped",
    "SimulatorAdmin",
    "Target",
    "detect_simulator",
    "run_all",
    "run_checks",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNSUPPORTED = 2

SIMULATOR_KEY = "sk-simulator-feature-checks"  # sent to our own simulator only
SIMULATOR_ALIASES = ("simulator", "embedded")
ADMIN_TIMEOUT = 3.0
WAIT_STEP = 0.002
WAIT_LIMIT = 10.0
RESULT_TIMEOUT = 30.0
ATTEMPT_TIMEOUT = 30.0
REAL_SERVER_MAX_TOKENS = 8  # keep checks against a paid API cheap
DETAIL_WIDTH = 90

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


# ------------------------------------------------------------------ backends


@dataclass(frozen=True)
class BackendEntry:
    """What the checks need to know of a backend: all of it from its adapter."""

    backend_class: type[BaseApiBackend]

    @property
    def spec(self) -> ProviderSpec:
        spec: ProviderSpec = self.backend_class.provider.spec
        return spec

    @property
    def chat_model(self) -> str | None:
        return self.spec.default_chat_model

    @property
    def embedding_model(self) -> str | None:
        return self.spec.default_embedding_model


BACKENDS: dict[str, BackendEntry] = {
    name: BackendEntry(cls) for name, cls in BACKEND_CLASSES.items()
}
PLANNED_BACKENDS = tuple(
    name
    for name in (
        "groq",
        "claude",
        "gemini",
        "ollama",
        "hf_tgi",
        "hf_tei",
        "vllm",
        "opea",
        "ovms",
        "llvm",
        "s3_kit",
    )
    if name not in BACKENDS
)


# ------------------------------------------------------------ check outcomes


class CheckFailed(AssertionError):
    """A check saw something the feature's contract forbids."""


class CheckSkipped(Exception):
    """A check cannot run against this target (the message says why)."""


def expect(condition: Any, message: str) -> None:
    """Like ``assert``, but survives ``python -O``."""
    if not condition:
        raise CheckFailed(message)


@dataclass
class CheckResult:
    name: str
    status: str
    details: str
    duration: float

    def as_dict(self) -> dict[str, str | float]:
        return {"status": self.status, "details": self.details, "duration": round(self.duration, 3)}


# --------------------------------------------------------- simulator control


class SimulatorAdmin:
    """A simulator driven over its ``/_admin/`` endpoints (ours or someone's), with its admin token."""

    def __init__(self, admin_url: str, token: str | None = None) -> None:
        self.admin_url = admin_url.rstrip("/")
        self._token = token
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({})
        )  # loopback: no proxy

    def _call(self, method: str, name: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(f"{self.admin_url}/{name}", data=body, method=method)
        req.add_header("Content-Type", "application/json")
        if self._token:
            req.add_header("Authorization", f"Bearer {self._token}")
        with self._opener.open(req, timeout=ADMIN_TIMEOUT) as response:
            return json.loads(response.read())

    def counters(self) -> dict[str, Any]:
        """The simulator's counters (JSON: see ``simulator.counters``)."""
        counters: dict[str, Any] = self._call("GET", "counters")
        return counters

    def scenario(self) -> dict[str, Any]:
        """The scenario in force (JSON: see ``simulator.scenario``)."""
        scenario: dict[str, Any] = self._call("GET", "config")["scenario"]
        return scenario

    def configure(self, **fields: Any) -> None:
        self._call("POST", "config", fields)

    def script(self, responses: list[dict[str, Any]]) -> None:
        self._call("POST", "script", responses)

    def reset(self) -> None:
        """Zero the counters; back to the starting scenario, no script."""
        self._call("POST", "reset", {"scenario": True})


def detect_simulator(base_url: str, admin_token: str | None = None) -> SimulatorAdmin | None:
    """A :class:`SimulatorAdmin` if ``base_url``'s server answers ``/_admin/counters`` (with ``admin_token``)."""
    parts = urllib.parse.urlsplit(base_url)
    if not parts.scheme or not parts.netloc:
        return None
    admin = SimulatorAdmin(f"{parts.scheme}://{parts.netloc}/_admin", admin_token)
    try:
        counters = admin.counters()
    except (OSError, ValueError):
        return None
    return admin if isinstance(counters, dict) and "requests_total" in counters else None


# -------------------------------------------------------------------- target


@dataclass
class Target:
    """Where the checks run, and how to build a fresh client for one check."""

    api: str
    backend: BackendEntry
    base_url: str
    key: str | None = field(repr=False)
    sim: SimulatorAdmin | None
    label: str
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def simulator(self) -> SimulatorAdmin:
        """The simulator's admin, for a check that needs fault injection or a script."""
        if self.sim is None:
            raise CheckSkipped("needs the simulator")
        return self.sim

    @contextmanager
    def client(self, **settings: Any) -> Iterator[Any]:
        """A fresh backend with ``settings``; against a simulator, its
        counters and scenario are reset first and restored after."""
        metadata = self.backend.backend_class.connection_metadata(self.base_url, self.key)
        # one request is one call, except in the batching check, which turns batching on
        metadata.update({"timeout": ATTEMPT_TIMEOUT, "batching_enabled": False, **settings})
        if self.sim is not None:
            self.sim.reset()
        client = self.backend.backend_class({}, metadata)
        try:
            yield client
        finally:
            client.close()
            if self.sim is not None:
                self.sim.reset()

    def probe(self, client: Any, tag: str) -> tuple[str, Any]:
        """The request a check sends, tagged ``tag``: a short chat where the
        backend chats (few tokens on a real API), else the backend's probe."""
        if self.backend.chat_model is None:
            probe: tuple[str, Any] = client.feature_probe(tag)
            return probe
        params: dict[str, Any] = (
            {} if self.sim is not None else {"max_tokens": REAL_SERVER_MAX_TOKENS}
        )
        request: tuple[str, Any] = client.provider.chat_request(
            self.backend.chat_model, _messages(tag), params, False
        )
        return request

    def echoes(self, client: Any, reply: Any, tag: str) -> bool:
        """Whether ``reply`` answers the request tagged ``tag`` (the
        simulator quotes the prompt); True where there is no text to read."""
        if self.backend.chat_model is None:
            return True
        return tag in client.provider.reply_text(reply)


def _messages(tag: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"feature check {tag}"}]


def call(target: Target, client: Any, tag: str) -> Any:
    endpoint, data = target.probe(client, tag)
    return client.make_request(endpoint, data)


def wait_until(predicate: Callable[[], bool], what: str, limit: float = WAIT_LIMIT) -> None:
    """Wait (briefly, a few ms at a time) until ``predicate()``; fail after ``limit`` s."""
    pause = threading.Event()
    end = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > end:
            raise CheckFailed(f"timed out after {limit:.0f}s waiting for {what}")
        pause.wait(WAIT_STEP)


def queue_chat(target: Target, client: Any, tag: str, priority: int | None = None) -> Any:
    """Queue the probe request tagged ``tag``; its future."""
    endpoint, data = target.probe(client, tag)
    return client.queue_with_priority({"endpoint": endpoint, "data": data}, priority)


def hold_slot(target: Target, client: Any, tag: str) -> Any:
    """Queue one request and wait until it holds the client's only slot.

    Against a simulator its latency keeps the request in flight; a server
    that answers before the request is seen in flight cannot saturate the
    client, so the check is skipped there."""
    future = queue_chat(target, client, tag)
    wait_until(
        lambda: client.current_requests == 1 or future.done(), "the first request to be in flight"
    )
    if future.done():
        if target.sim is not None:
            raise CheckFailed("the simulator answered before its latency passed")
        raise CheckSkipped(
            "the server answered too fast to hold the only slot; run against the simulator"
        )
    return future


# -------------------------------------------------------------------- checks


def check_priority(target: Target) -> str:
    """HIGH requests queued after LOW ones complete before them (one slot)."""
    n = 4
    order: list[str] = []
    with target.client(max_concurrent_requests=1) as client:
        if target.sim is not None:
            target.sim.configure(latency=0.05)
        futures: dict[str, Any] = {}

        def track(tag: str, future: Any) -> None:
            future.add_done_callback(lambda f: order.append(tag))
            futures[tag] = future

        track("blocker", hold_slot(target, client, "blocker"))
        lows, highs = [f"low-{i}" for i in range(n)], [f"high-{i}" for i in range(n)]
        for tag in lows:
            track(tag, queue_chat(target, client, tag, client.PRIORITY_LOW))
        for tag in highs:
            track(tag, queue_chat(target, client, tag, client.PRIORITY_HIGH))
        replies = {tag: future.result(RESULT_TIMEOUT) for tag, future in futures.items()}
        expected = ["blocker", *highs, *lows]
        expect(order == expected, f"completion order {order}, expected {expected}")
        stats = client.get_stats()
        expect(
            stats["successful_requests"] == len(expected),
            f"client counted {stats['successful_requests']} successes",
        )
        if target.sim is None:
            return f"{n} HIGH completed before {n} LOW queued earlier (server counts not checked: not a simulator)"
        counters = target.sim.counters()
        expect(
            counters["requests_total"] == len(expected),
            f"simulator saw {counters['requests_total']} requests, expected {len(expected)}",
        )
        expect(
            counters["peak_concurrency"] == 1,
            f"simulator saw {counters['peak_concurrency']} at once with max_concurrent_requests=1",
        )
        wrong = [tag for tag, reply in replies.items() if not target.echoes(client, reply, tag)]
        expect(not wrong, f"replies not answering their own request: {wrong}")
    return f"{n} HIGH completed before {n} LOW queued earlier; simulator saw {len(expected)} requests, 1 at a time"


def check_circuit_breaker(target: Target) -> str:
    """CLOSED -> OPEN after 3 failures -> fail fast -> HALF_OPEN probe -> CLOSED."""
    threshold, reset_timeout = 3, 0.3
    with target.client(
        failure_threshold=threshold, reset_timeout=reset_timeout, max_retries=0
    ) as client:
        sim = target.simulator()
        sim.configure(outage=True)
        for i in range(threshold):
            try:
                call(target, client, f"outage-{i}")
            except ServerError as exc:
                expect(
                    exc.status is not None and exc.status >= 500,
                    f"outage answered with {exc.status}, expected a 5xx",
                )
            else:
                raise CheckFailed("a request succeeded during the outage")
        expect(
            client.circuit_state == "OPEN",
            f"circuit is {client.circuit_state} after {threshold} failures, expected OPEN",
        )
        seen = sim.counters()["requests_total"]
        expect(seen == threshold, f"simulator saw {seen} requests, expected {threshold}")
        for i in range(3):
            try:
                call(target, client, f"open-{i}")
            except CircuitOpenError:
                pass
            else:
                raise CheckFailed("a request went through an OPEN circuit")
        seen = sim.counters()["requests_total"]
        expect(seen == threshold, f"requests reached the simulator while OPEN ({seen} in all)")
        threading.Event().wait(reset_timeout + 0.05)
        expect(
            client.circuit_state == "HALF_OPEN",
            f"circuit is {client.circuit_state} after reset_timeout, expected HALF_OPEN",
        )
        sim.configure(outage=False)
        call(target, client, "probe")
        expect(
            client.circuit_state == "CLOSED",
            f"circuit is {client.circuit_state} after a successful probe, expected CLOSED",
        )
        counters = sim.counters()
        expect(
            counters["requests_total"] == threshold + 1,
            f"simulator saw {counters['requests_total']} requests, expected {threshold + 1}",
        )
        expect(
            counters["faults"]["outage"] == threshold,
            f"simulator answered {counters['faults']['outage']} with the outage",
        )
    return f"OPEN after {threshold} 5xx answers, 3 fast CircuitOpenErrors sent nothing, HALF_OPEN probe closed it"


def check_monitoring(target: Target) -> str:
    """Stats and report match what the server saw, tokens included."""
    sequential, concurrent = 4, 4
    total = sequential + concurrent
    with target.client() as client:
        client.reset_stats()
        responses = [call(target, client, f"seq-{i}") for i in range(sequential)]
        futures = [queue_chat(target, client, f"par-{i}") for i in range(concurrent)]
        responses += [future.result(RESULT_TIMEOUT) for future in futures]
        stats = client.get_stats()
        report = client.generate_report(True)
        expect(
            stats["total_requests"] == total,
            f"client counted {stats['total_requests']} requests, expected {total}",
        )
        expect(
            stats["successful_requests"] == total,
            f"client counted {stats['successful_requests']} successes, expected {total}",
        )
        summary = report["summary"]
        expect(summary["success_rate"] == 100.0, f"success_rate {summary['success_rate']}")
        expect(summary["retry_rate"] == 0.0, f"retry_rate {summary['retry_rate']}")
        expect(
            report["circuit_breaker"]["state"] == "CLOSED",
            f"circuit_breaker.state {report['circuit_breaker']['state']}",
        )
        if (
            target.backend.chat_model or target.backend.embedding_model
        ):  # S3 requests are for no model
            counted = sum(m.get("requests", 0) for m in report["models"].values())
            expect(counted == total, f"models: {report['models']}")
        expect(report["errors"] == {}, f"errors: {report['errors']}")
        used_in = sum(client.provider.usage(r)[0] for r in responses)
        used_out = sum(client.provider.usage(r)[1] for r in responses)
        tokens = report["tokens"]
        expect(
            (tokens["input"], tokens["output"]) == (used_in, used_out),
            f"report tokens {tokens}, responses' usage {used_in}+{used_out}",
        )
        if target.sim is None:
            return f"{total} requests, report matches the responses' usage (server counts not checked: not a simulator)"
        counters = target.sim.counters()
        expect(
            counters["requests_total"] == total,
            f"simulator saw {counters['requests_total']} requests, client {total}",
        )
        if not (
            used_in or used_out
        ):  # e.g. TEI's /embed: the API reports no usage, so there is none to count
            return f"{total} requests, as the simulator counted (this API reports no token usage); report has the seed's keys"
        seen = counters["tokens"]
        expect(
            (seen["prompt"], seen["completion"]) == (tokens["input"], tokens["output"]),
            f"report tokens {tokens}, simulator {seen}",
        )
    return f"{total} requests and {tokens['total']} tokens, as the simulator counted; report has the seed's keys"


def check_batching(target: Target) -> str:
    """20 concurrent single-text embeddings go out in at most ceil(20/8) calls."""
    n, batch_size = 20, 8
    model = target.backend.embedding_model
    if model is None:
        raise CheckSkipped(f"the {target.api} backend has no embeddings")
    texts = [f"feature check text {i}" for i in range(n)]
    with target.client(
        batching_enabled=True, max_batch_size=batch_size, batch_timeout=0.25
    ) as client:
        client.supported_batch_models = [model]
        start = threading.Barrier(n)

        def embed(text: str) -> list[float]:
            start.wait()
            endpoint, data = client.provider.embeddings_request(model, text, {})
            got: list[list[float]] = client.provider.embedding_vectors(
                client.make_request(endpoint, data)
            )
            expect(len(got) == 1, f"{text!r} got {len(got)} embeddings")
            return got[0]

        with ThreadPoolExecutor(n) as pool:
            vectors = list(pool.map(embed, texts))
        batches = client.get_stats()["batches"]["count"]
        most = math.ceil(n / batch_size)
        expect(
            1 <= batches <= most,
            f"client sent {batches} batches for {n} inputs, expected at most {most}",
        )
        if target.sim is None:
            expect(len({len(v) for v in vectors}) == 1, "embeddings of different lengths")
            return f"{n} callers each got one embedding from {batches} batched calls (server counts not checked: not a simulator)"
        dims = target.sim.scenario()["embedding_dimensions"]
        seen = target.sim.counters()["embedding_inputs"]
        expect(seen["total"] == n, f"simulator embedded {seen['total']} inputs, expected {n}")
        expect(
            seen["calls"] <= most,
            f"simulator got {seen['calls']} embeddings calls for {n} inputs, expected at most {most}",
        )
        wrong = [
            text
            for text, vector in zip(texts, vectors, strict=False)
            if vector != embedding_for(text, dims)
        ]
        expect(not wrong, f"callers got another text's vector: {wrong}")
    return f"{n} callers, {seen['calls']} embeddings calls (sizes {seen['recent']}), each got its own vector"


def check_retries(target: Target) -> str:
    """A 429 with Retry-After is retried after that wait, not the backoff."""
    sim = target.simulator()
    # Backoff far shorter than Retry-After: the elapsed time shows which was used.
    retry_after = 0.3
    with target.client(max_retries=2, initial_retry_delay=0.01, retry_jitter=0.0) as client:
        sim.script([{"status": 429, "headers": {"retry-after": str(retry_after)}}, {"status": 200}])
        started = time.monotonic()
        call(target, client, "retry-after")
        elapsed = time.monotonic() - started
        expect(
            elapsed >= retry_after,
            f"retried after {elapsed:.3f}s, before the Retry-After of {retry_after}s",
        )
        _expect_one_retry(client, sim)
    # Backoff far longer than Retry-After: the call must not wait for the backoff.
    retry_after_ms = 100
    with target.client(max_retries=2, initial_retry_delay=10.0, retry_jitter=0.0) as client:
        sim.script(
            [{"status": 429, "headers": {"retry-after-ms": str(retry_after_ms)}}, {"status": 200}]
        )
        started = time.monotonic()
        future = queue_chat(target, client, "retry-after-ms")
        expect(
            future.wait(5.0), "still waiting after 5s: the 10s backoff was used, not retry-after-ms"
        )
        future.result(0)
        fast = time.monotonic() - started
        expect(
            fast >= retry_after_ms / 1000,
            f"retried after {fast:.3f}s, before retry-after-ms {retry_after_ms}",
        )
        _expect_one_retry(client, sim)
    return f"429 then 200: waited {elapsed:.2f}s for Retry-After {retry_after}s and {fast:.2f}s for retry-after-ms {retry_after_ms}"


def _expect_one_retry(client: Any, sim: SimulatorAdmin) -> None:
    stats = client.get_stats()
    expect(
        stats["successful_requests"] == 1,
        f"client counted {stats['successful_requests']} successes, expected 1",
    )
    expect(
        stats["retried_requests"] == 1,
        f"client counted {stats['retried_requests']} retried requests, expected 1",
    )
    counters = sim.counters()
    expect(
        counters["requests_total"] == 2,
        f"simulator saw {counters['requests_total']} requests, expected 2",
    )
    expect(
        counters["by_status"] == {"429": 1, "200": 1}, f"simulator answered {counters['by_status']}"
    )


def check_queue_full(target: Target) -> str:
    """Past queue_size a request fails at once with QueueFullError; the rest complete."""
    size = 3
    with target.client(max_concurrent_requests=1, queue_size=size) as client:
        if target.sim is not None:
            target.sim.configure(latency=0.1)
        first = hold_slot(target, client, "slot")
        queued = [queue_chat(target, client, f"queued-{i}") for i in range(size)]
        try:
            queue_chat(target, client, "over")
        except QueueFullError as exc:
            message = str(exc)
        else:
            raise CheckFailed(f"a request over queue_size={size} was accepted")
        expect("Request queue is full" in message, f"QueueFullError says {message!r}")
        for future in [first, *queued]:
            future.result(RESULT_TIMEOUT)
        stats = client.get_stats()
        expect(
            stats["successful_requests"] == size + 1,
            f"client counted {stats['successful_requests']} successes, expected {size + 1}",
        )
        expect(
            stats["rejected_requests"] == 1,
            f"client counted {stats['rejected_requests']} rejected, expected 1",
        )
        if target.sim is None:
            return f"request {size + 2} refused: {message!r}; the other {size + 1} completed"
        seen = target.sim.counters()["requests_total"]
        expect(
            seen == size + 1,
            f"simulator saw {seen} requests, expected {size + 1} (the refused one must not be sent)",
        )
    return f"request {size + 2} refused at once ({message.split(':')[0]!r}); {size + 1} completed, simulator saw {seen}"


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Target], str]
    needs_simulator: bool  # needs fault injection or a response script


CHECKS: tuple[Check, ...] = (
    Check("priority_queue", check_priority, needs_simulator=False),
    Check("circuit_breaker", check_circuit_breaker, needs_simulator=True),
    Check("monitoring", check_monitoring, needs_simulator=False),
    Check("request_batching", check_batching, needs_simulator=False),
    Check("retry_after", check_retries, needs_simulator=True),
    Check("queue_full", check_queue_full, needs_simulator=False),
)


# -------------------------------------------------------------------- runner


def run_one(check: Check, target: Target) -> CheckResult:
    """Run one check; any exception becomes its FAIL, never the run's end."""
    started = time.monotonic()
    if check.needs_simulator and target.sim is None:
        return CheckResult(check.name, SKIP, "skipped (needs the simulator)", 0.0)
    try:
        status, details = PASS, check.run(target)
    except CheckSkipped as exc:
        status, details = SKIP, f"skipped ({exc})"
    except CheckFailed as exc:
        status, details = FAIL, str(exc)
    except Exception as exc:  # a crash is this check's failure
        status, details = FAIL, f"{type(exc).__name__}: {exc}"
    details = " ".join(redact(details, target.secrets).split())  # one line
    return CheckResult(check.name, status, details, time.monotonic() - started)


def run_all(
    target: Target, checks: Sequence[Check] = CHECKS, *, echo: Callable[[str], None] = print
) -> list[CheckResult]:
    results = []
    for check in checks:
        result = run_one(check, target)
        echo(f"  {result.name:<18} {result.status}  ({result.duration:.2f}s)")
        results.append(result)
    return results


def success_rate(results: Sequence[CheckResult]) -> float:
    """Percent of the checks that ran (not skipped) which passed."""
    ran = [r for r in results if r.status != SKIP]
    return 100.0 * sum(r.status == PASS for r in ran) / len(ran) if ran else 0.0


def all_passed(results: Sequence[CheckResult]) -> bool:
    return all(r.status != FAIL for r in results) and any(r.status == PASS for r in results)


def format_summary(results: Sequence[CheckResult]) -> str:
    width = max(len("feature"), *(len(r.name) for r in results))
    lines = [
        f"{'feature':<{width}}  status  seconds  detail",
        f"{'-' * width}  ------  -------  {'-' * 6}",
    ]
    for r in results:
        detail = (
            r.details if len(r.details) <= DETAIL_WIDTH else r.details[: DETAIL_WIDTH - 3] + "..."
        )
        lines.append(f"{r.name:<{width}}  {r.status:<6}  {r.duration:7.2f}  {detail}")
    lines.append(
        f"success rate {success_rate(results):.0f}% of the checks that ran: {'passed' if all_passed(results) else 'failed'}"
    )
    return "\n".join(lines)


def write_report(target: Target, results: Sequence[CheckResult], output_dir: str) -> str:
    now = time.time()
    path = os.path.join(
        output_dir,
        f"{target.api}_enhanced_features_{time.strftime('%Y%m%d_%H%M%S', time.localtime(now))}.json",
    )
    report = {
        "api": target.api,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "target": target.label,
        "simulator": target.sim is not None,
        "results": {r.name: r.as_dict() for r in results},
        "success_rate": round(success_rate(results), 1),
        "status": "passed" if all_passed(results) else "failed",
    }
    os.makedirs(output_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        out.write(json.dumps(redact(report, target.secrets), indent=2) + "\n")
    return path


# ------------------------------------------------------------------- targets


def _public_url(url: str) -> str:
    """``url`` without any user:password part."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


S3_OUTAGE_BODY = "<Error><Code>ServiceUnavailable</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"


@contextmanager
def embedded_server(api: str, backend: BackendEntry) -> Iterator[tuple[Simulator, str]]:
    """Our simulator, speaking the backend's wire format; for ``s3_kit`` a
    local S3 server (moto) with the simulator in front of it as a faulty proxy."""
    if api != "s3_kit":
        with Simulator(port=0) as sim:
            yield sim, sim.url.rstrip("/") + backend.spec.simulator_path
        return
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise CheckSkipped(
            "s3_kit's checks need a local S3 server: pip install 'ipfs_accelerate_py[test]' (moto)"
        ) from None
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        # a 503 outage must read as one (ServiceUnavailable), not as S3's SlowDown throttling
        # moto is ours and checks the signature: the client's credentials may go to it
        scenario = {
            "upstream": f"http://{host}:{port}",
            "proxy_error_body": S3_OUTAGE_BODY,
            "forward_credentials": True,
        }
        with Simulator(scenario, port=0) as sim:
            client = s3_kit({}, s3_kit.connection_metadata(sim.url, None))  # api is s3_kit
            try:
                client.create_bucket()
            finally:
                client.close()
            yield sim, sim.url
    finally:
        moto.stop()


@contextmanager
def resolve_target(
    api: str,
    backend: BackendEntry,
    key: str | None,
    base_url: str | None,
    echo: Callable[[str], None],
    admin_token: str | None = None,
) -> Iterator[Target]:
    """The target for these arguments; an embedded simulator lives as long as the block."""
    secrets = (key,) if key else ()
    if base_url is not None and base_url.strip().lower() in SIMULATOR_ALIASES:
        base_url = None
    if key is None and base_url is None:
        with embedded_server(api, backend) as (sim, url):
            echo(f"No --key or --base-url given: running against an embedded simulator at {url}")
            yield Target(
                api,
                backend,
                url,
                SIMULATOR_KEY,
                SimulatorAdmin(sim.admin_url, sim.admin_token),
                "simulator",
                secrets,
            )
        return
    url = base_url or backend.spec.default_base_url
    admin = detect_simulator(url, admin_token)
    label = _public_url(url)
    what = (
        "a simulator (its /_admin/counters answers)"
        if admin
        else "a server without fault injection: checks that need it are skipped"
    )
    if admin is None and not admin_token:
        what += " (a simulator's admin endpoint needs its token: --admin-token)"
    echo(f"Running against {label}: {what}")
    yield Target(api, backend, url, key, admin, label, secrets)


def run_checks(
    api: str = "openai",
    key: str | None = None,
    base_url: str | None = None,
    output_dir: str = ".",
    admin_token: str | None = None,
) -> int:
    """Run every check against ``api`` (``admin_token``: a simulator at ``base_url``'s); print the summary, write the JSON
    report into ``output_dir``; 0 if every check that ran passed, 1 if one
    failed, 2 if the backend is not there (yet)."""
    api = canonical_backend_name(api or "")  # "anthropic" -> "claude", "google" -> "gemini"
    backend = BACKENDS.get(api)
    if backend is None:
        if api in PLANNED_BACKENDS:
            print(
                f"The {api} backend is not there yet: the checks can run against {describe_backend_names(BACKENDS)} for now."
            )
        else:
            print(
                f"Unknown API {api!r}: choose from {describe_backend_names(BACKENDS)} (planned: {', '.join(PLANNED_BACKENDS)})."
            )
        return EXIT_UNSUPPORTED
    try:
        with resolve_target(api, backend, key, base_url, print, admin_token) as target:
            print(f"Checking the {api} backend's advanced features:")
            results = run_all(target)
    except CheckSkipped as exc:
        print(f"Cannot check {api} here: {exc}")
        return EXIT_UNSUPPORTED
    print()
    print(format_summary(results))
    print(f"Report written to {write_report(target, results, output_dir)}")
    return EXIT_OK if all_passed(results) else EXIT_FAILED
