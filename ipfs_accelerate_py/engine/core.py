"""What every part of the engine's driver shares: the backend's policies and
state, and the few helpers all of them call.

The driver is cut by job, one module each, all built on :class:`EngineCore`:
:mod:`.pump` (dispatch, waiting for keys and the circuit, retries),
:mod:`.attempt` (one attempt, its hold on permit, lease and slot),
:mod:`.streaming` (a stream after its first chunk), and :mod:`.engine`
(admission, completion, cancel, close).  The methods one part calls in
another are declared here, so each module imports only downward.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import urllib.parse
from collections.abc import Callable
from typing import Any

from ..resilience import retry as retry_policy
from ..resilience.breaker import STATE_OPEN, CircuitBreaker
from ..resilience.clock import Clock
from ..resilience.errors import (
    ApiError,
    BudgetExceededError,
    CircuitOpenError,
    MalformedResponseError,
    copied,
)
from ..resilience.prices import PriceTable
from ..resilience.priority_queue import PriorityRequestQueue
from ..resilience.stats import StatsCollector
from ..transport.base import Transport
from .batches import BatchLane
from .deadlines import DeadlineWatch
from .events import EventBus, RequestDone
from .keyring import KeyRing
from .lifecycle import Event, must_fail_fast
from .loop import EngineLoop, engine_loop, in_engine_thread
from .request import Request
from .settings import Settings

__all__ = ["MAX_TOKEN_COUNT", "EngineCore", "host_of"]

log = logging.getLogger("ipfs_accelerate_py.engine")

MAX_TOKEN_COUNT = 10**12
"""The most tokens a usage figure may say and still be believed."""


class EngineCore:
    """One backend's state on the engine loop; see the module docstring."""

    provider: Any
    settings: Settings
    base_url: str
    clock: Clock
    rng: random.Random
    transport: Transport
    queue: PriorityRequestQueue
    breaker: CircuitBreaker
    keys: KeyRing
    retry_options: retry_policy.RetryOptions
    stats: StatsCollector
    events: EventBus
    batches: BatchLane
    deadlines: DeadlineWatch
    supported_batch_models: frozenset[str]
    in_flight: int
    closed: bool
    spent_cost: float  # (loop writes) US dollars of finished requests, for max_cost
    spent_tokens: int  # (loop writes) their tokens, for max_tokens_total
    budgeted: bool  # a max_cost or max_tokens_total is set
    last_failure: ApiError | None  # the last failure the breaker counted, for CircuitOpenError
    _engine_loop: EngineLoop | None  # None in a forked child until it is used
    _held_count: int  # (queue.lock) requests held aside while only their model cools
    _wake_pending: bool  # (queue.lock) the pump is already asked to run
    _backing_off: set[Request]  # (loop) waiting on a timer: a retry's backoff, or a hold
    _held: set[Request]  # (loop) of those, the ones held aside for their model's cooldown
    _tasks: set[asyncio.Task[None]]  # (loop) attempts in flight

    # ------------------------------------------------------------ the loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The engine loop this backend lives on (in a forked child: the child's, started on first use)."""
        current = self._engine_loop
        if current is None:
            current = self._engine_loop = engine_loop()
        return current.loop

    def call_soon(self, fn: Callable[..., object], *args: Any) -> None:
        if in_engine_thread():
            self.loop.call_soon(fn, *args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def call_later(
        self, delay: float, fn: Callable[..., object], *args: Any
    ) -> asyncio.TimerHandle:
        """(loop) ``fn(*args)`` after ``delay`` seconds."""
        return self.loop.call_later(delay, fn, *args)

    def wake(self) -> None:
        """Have the loop run the pump soon (once, however many ask)."""
        with self.queue.lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        self.call_soon(self._pump)

    # ------------------------------------------------- declared elsewhere

    def _pump(self) -> None:
        """(loop) Start what may start now; see :mod:`.pump`."""
        raise NotImplementedError

    def finish(
        self,
        req: Request,
        result: Any,
        error: BaseException | None,
        event: Event,
        usage: tuple[int, int] | None = None,
    ) -> None:
        """(loop) Complete ``req`` by ``event``; see :mod:`.engine`."""
        raise NotImplementedError

    # ------------------------------------------------------------- helpers

    def must_fail_fast(self, req: Request, now: float) -> bool:
        """Whether ``req``, entering the queue now, must fail for an OPEN circuit."""
        breaker = self.breaker
        if breaker.state(now) != STATE_OPEN:
            return False
        return must_fail_fast(True, req.circuit_wait, req.deadline, now, breaker.retry_in(now))

    def circuit_open_error(self, now: float, req: Request | None = None) -> CircuitOpenError:
        wait = self.breaker.retry_in(now)
        snap = self.breaker.snapshot(now)
        failures = snap.get("consecutive_failures", 0)
        if failures >= snap.get("failure_threshold", 1):
            why = f"circuit OPEN after {failures} consecutive failures"
        else:
            why = "circuit OPEN: the failure rate rule tripped (see client.failure_rate_threshold)"
        last = self.last_failure
        if last is not None:
            why += f"; last: {type(last).__name__}: {last.message}"
        if req is not None and req.circuit_wait and req.deadline is not None:
            advice = (
                f"the next probe, in {wait:.1f}s, is past this request's deadline in "
                f"{retry_policy.seconds_text(max(0.0, req.deadline - now))}; see client.request_deadline and client.reset_timeout"
            )
        else:
            times = snap.get("times_opened", 0)
            advice = (
                f"failing fast, next probe in {wait:.1f}s (opened {times} time{'' if times == 1 else 's'} so far); see "
                "client.failure_threshold and client.reset_timeout, or on_circuit_open='wait' to wait for the probe"
            )
        error = CircuitOpenError(f"{why}; {advice}", provider=self.provider.name, retry_after=wait)
        error.__cause__ = last
        if req is not None:
            self.annotate(error, req)
        return error

    def parsed(self, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``read(*args, **kwargs)``, a provider reading what the server sent:
        whatever it raises but a typed error is the server's malformed answer."""
        try:
            return read(*args, **kwargs)
        except ApiError:
            raise
        except Exception as exc:
            raise MalformedResponseError(
                f"the response could not be read ({type(exc).__name__}: {exc})",
                provider=self.provider.name,
            ) from exc

    def usage_of(self, result: Any) -> tuple[int, int]:
        """(tokens in, tokens out) as the provider reports them in ``result``.
        Figures that cannot be read or believed (not a whole number from 0
        to MAX_TOKEN_COUNT) count as 0, with a warning: never an error."""
        try:
            figures = self.provider.usage(result)
            if type(figures) is tuple and len(figures) == 2:  # the common case, without calls
                tokens_in, tokens_out = figures
                if (
                    type(tokens_in) is int
                    and type(tokens_out) is int
                    and 0 <= tokens_in <= MAX_TOKEN_COUNT
                    and 0 <= tokens_out <= MAX_TOKEN_COUNT
                ):
                    return tokens_in, tokens_out
            figures = tuple(figures)
        except Exception as exc:
            why = f"{type(exc).__name__}"
        else:
            if len(figures) == 2 and _believable(figures[0]) and _believable(figures[1]):
                return figures[0], figures[1]
            why = "not whole numbers from 0 to MAX_TOKEN_COUNT"
        log.warning(
            "%s: the response's token usage could not be read (%s); its tokens count as 0",
            self.provider.name,
            why,
        )
        return 0, 0

    def annotate(self, error: ApiError, req: Request) -> ApiError:
        """Say where ``error`` came from: provider, model, host, key, attempts and
        request ids, from ``req``.  An error that already speaks for another
        request (one error failing several) is copied first; returns the one to raise."""
        if error.client_request_id is not None and error.client_request_id != req.request_id:
            error = copied(error)
        key = req.last_key
        error.provider = error.provider or self.provider.name
        error.model = error.model or req.model
        error.key_name = error.key_name or key
        error.host = (
            error.host
            or host_of(self.keys.base_url(key) if key is not None else None)
            or host_of(self.base_url)
        )
        error.attempts = req.attempts
        error.client_request_id = req.request_id
        error.request_id = error.request_id or req.request_id
        return error

    def record_request(
        self,
        req: Request,
        result: Any,
        error: BaseException | None,
        now: float,
        attempts: int | None = None,
        usage: tuple[int, int] | None = None,
        stream: Any = None,
    ) -> None:
        """The statistics of a finished request, what it spent (and its
        ``RequestDone``); ``stream``: a stream's progress, for the event."""
        if usage is None:
            usage = self.usage_of(result) if error is None else (0, 0)
        tokens_in, tokens_out = usage
        cost = self.spend(req.model, tokens_in, tokens_out)
        first = req.first_attempt_at if req.first_attempt_at is not None else now
        error_kind = getattr(error, "kind", type(error).__name__) if error is not None else None
        attempts = attempts if attempts is not None else req.attempts
        self.stats.record_figures(  # = record_request(RequestRecord(...)), without the record
            error is None,
            now - req.submitted_at,
            max(0.0, first - req.submitted_at),
            attempts,
            req.model,
            error_kind,
            tokens_in,
            tokens_out,
            req.last_key,
            req.endpoint,
            cost,
        )
        if self.events.subscribers[RequestDone]:
            if stream is not None:
                first_chunk = stream.first
                answer_model, answer_id, _ = self.provider.response_info(first_chunk)
                reasons: tuple[str, ...] = (stream.finish_reason,) if stream.finish_reason else ()
            elif error is None:
                answer_model, answer_id, reasons = self.provider.response_info(result)
            else:
                answer_model, answer_id, reasons = None, None, ()
            key = req.last_key
            self.events.publish(
                RequestDone(
                    req.request_id,
                    self.provider.name,
                    req.model,
                    error is None,
                    error_kind,
                    attempts,
                    now - req.submitted_at,
                    now,
                    req.endpoint,
                    key,
                    host_of(self.keys.base_url(key) if key is not None else None)
                    or host_of(self.base_url),
                    max(0.0, first - req.submitted_at),
                    tokens_in,
                    tokens_out,
                    cost,
                    answer_model,
                    answer_id,
                    reasons,
                    error,
                    req.stream,
                )
            )

    def spend(self, model: str | None, tokens_in: int, tokens_out: int) -> float | None:
        """(loop) Count what a finished request spent against the budgets;
        its cost in dollars (None: ``model`` has no price)."""
        self.spent_tokens += tokens_in + tokens_out
        prices: PriceTable = self.settings.values["prices"]
        cost = prices.cost(model, tokens_in, tokens_out)
        if cost is not None:
            self.spent_cost += cost
        return cost

    def budget_error(self) -> BudgetExceededError | None:
        """The error a new request gets when a budget is spent, else None."""
        values = self.settings.values
        max_cost, max_tokens = values["max_cost"], values["max_tokens_total"]
        if max_cost is not None and self.spent_cost >= max_cost:
            return BudgetExceededError(
                f"budget spent: ${self.spent_cost:.4f} of max_cost ${max_cost:g}; no new "
                "request is sent (raise client.max_cost, or set it to None, to go on)",
                provider=self.provider.name,
                budget="max_cost",
                limit=max_cost,
                spent=self.spent_cost,
            )
        if max_tokens is not None and self.spent_tokens >= max_tokens:
            return BudgetExceededError(
                f"budget spent: {self.spent_tokens} of max_tokens_total {max_tokens} tokens; "
                "no new request is sent (raise client.max_tokens_total, or set it to None, to go on)",
                provider=self.provider.name,
                budget="max_tokens_total",
                limit=max_tokens,
                spent=self.spent_tokens,
            )
        return None


@functools.lru_cache(maxsize=64)
def host_of(url: str | None) -> str | None:
    """``host:port`` of a base URL, for errors."""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return None
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}" if port else host


def _believable(count: Any) -> bool:
    """A token count as a whole number from 0 to MAX_TOKEN_COUNT (not a bool, a float, a string)."""
    return isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= MAX_TOKEN_COUNT
