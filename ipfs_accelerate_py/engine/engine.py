"""The engine: drives each request through the policies and the transport.

Admission runs in the caller's thread (so a full queue or an open circuit
fails at once, without a trip to the loop); everything after runs on the
process's engine loop:

    submit -> [batch assembler] -> priority queue -> pump (max_concurrent_requests)
           -> attempt (breaker permit, transport) -> success | retry decision
           -> backoff timer -> back into the queue at its old place | complete

The pump is not a task that polls: it runs when something changes (a
request arrives, a slot frees, a backoff ends).  No lock is held across I/O
or a wait; ``queue.lock`` guards the queue and the few counters shared with
callers' threads.  Every future completes exactly once (``RequestFuture``
refuses a second outcome).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
import random
import urllib.parse
from collections.abc import Iterator
from typing import Any

from ..resilience import retry as retry_policy
from ..resilience.breaker import STATE_CLOSED, STATE_OPEN, BreakerOptions, CircuitBreaker
from ..resilience.clock import SYSTEM_CLOCK, Clock
from ..resilience.errors import (
    ApiError,
    AuthenticationError,
    CancelledRequestError,
    CircuitOpenError,
    DeadlineExceededError,
    MalformedResponseError,
    NetworkError,
    QueueFullError,
    RateLimitDeadlineError,
    RateLimitError,
    RequestTimeoutError,
    ShutdownError,
    StreamStalledError,
    classify_exception,
    copied,
)
from ..resilience.keys import (
    REASON_BREAKER,
    REASON_COOLING,
    REASON_KEY_COOLING,
    REASON_RPM,
    REASON_TPM,
    Readiness,
)
from ..resilience.priority_queue import PriorityRequestQueue
from ..resilience.stats import RequestRecord, StatsCollector
from ..transport.base import StreamResponse, Transport
from ..transport.sse import iter_ndjson, iter_sse
from . import forking
from .attempt import FAILURE, IGNORED, SUCCESS, AttemptHold
from .batches import BatchLane
from .deadlines import DeadlineWatch, StallWatch
from .keyring import KeyRing, key_fingerprint
from .loop import EngineLoop, engine_loop, in_engine_thread, start_task
from .request import Request
from .settings import Settings
from .stream import END_OF_STREAM, ChunkStream, StreamProgress

__all__ = ["Engine", "key_fingerprint"]

log = logging.getLogger("ipfs_accelerate_py.engine")

_BREAKER_SETTINGS = {
    "failure_threshold": "failure_threshold",
    "reset_timeout": "reset_timeout",
    "half_open_max_requests": "half_open_max_requests",
    "failure_rate_threshold": "failure_rate_threshold",
    "slow_call_duration": "slow_call_duration",
    "slow_call_rate_threshold": "slow_call_rate_threshold",
    "breaker_window": "window_seconds",
    "breaker_minimum_calls": "minimum_calls",
}
_MIN_HOLD = 0.001  # seconds: the shortest hold, so that a hold can never turn into a spin
_HELD_BY = {
    REASON_COOLING: "cooling after HTTP 429 for this model",
    REASON_KEY_COOLING: "cooling after HTTP 429, key-wide",
    REASON_RPM: "its rpm limit",
    REASON_TPM: "its tpm limit",
}
_RETRY_SETTINGS = {
    "max_retries": "max_retries",
    "backoff_factor": "backoff_factor",
    "initial_retry_delay": "initial_delay",
    "max_retry_delay": "max_delay",
    "retry_jitter": "jitter",
    "max_retry_after": "max_retry_after",
}


class Engine:
    """One backend's queue, dispatcher, batch lane, breaker and stats."""

    def __init__(
        self,
        provider: Any,
        settings: Settings,
        *,
        base_url: str,
        api_key: str | None,
        transport: Transport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.base_url = base_url
        self.clock = clock
        self.rng = rng or random.Random()
        if transport is None:
            from ..transport.aiohttp_transport import AiohttpTransport

            transport = AiohttpTransport()
        self.transport = transport
        self._engine_loop: EngineLoop | None = (
            engine_loop()
        )  # None in a forked child until it is used

        self.queue = PriorityRequestQueue(settings["queue_size"], settings["queue_aging_interval"])
        self.breaker = CircuitBreaker(self._breaker_options())
        self.breaker.add_listener(self._on_breaker_transition)
        self.keys = KeyRing(settings["key_strategy"], self._breaker_options(), clock.now())
        self.keys.pool.default_cooldown = settings[
            "initial_retry_delay"
        ]  # a 0-remaining hint without its reset
        self.keys.pool.max_cooldown = settings["max_retry_after"]  # no server rests a key longer
        self.keys.set_default(api_key, clock.now())
        self.retry_options = self._retry_options()
        self.stats = StatsCollector()
        self.batches = BatchLane(self, settings["max_batch_size"], settings["batch_timeout"])
        settings.add_listener(self._on_setting)

        self.in_flight = 0
        self.closed = False
        self.last_failure: ApiError | None = (
            None  # the last failure the breaker counted, for CircuitOpenError
        )
        self._held_count = (
            0  # (queue.lock) requests held aside while only their model cools: they count as queued
        )
        self._swept_opening: float | None = (
            None  # (loop) the opening whose queue was last sorted out
        )
        self._circuit_timer: asyncio.TimerHandle | None = (
            None  # (loop) wakes the pump at the next probe
        )
        # shared with callers' threads, guarded by queue.lock
        self._wake_pending = False
        # loop-only
        self.deadlines = DeadlineWatch(self)
        self._backing_off: set[Request] = set()  # waiting on a timer: a retry's backoff, or a hold
        self._held: set[Request] = set()  # of those, the ones held aside for their model's cooldown
        self._key_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self.supported_batch_models: frozenset[str] = frozenset()
        forking.register(self)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The engine loop this backend lives on (in a forked child: the child's, started on first use)."""
        current = self._engine_loop
        if current is None:
            current = self._engine_loop = engine_loop()
        return current.loop

    def _loop_alive(self) -> bool:
        return self._engine_loop is not None and self._engine_loop.alive

    def restart_after_fork(self) -> None:
        """(in a forked child, before anything else runs) Forget the parent's
        loop, work and held locks; see :mod:`.forking`."""
        for policy in (self.queue, self.breaker, self.keys.pool, self.stats):
            forking.reinit_locks(policy)
        with self.queue.lock:
            self.queue.drain()
            self._held_count = 0
            self._wake_pending = False
        self._engine_loop = None
        self.in_flight = 0
        self._tasks = set()
        self._backing_off = set()
        self._held = set()
        self._key_timer = self._circuit_timer = None
        self.deadlines = DeadlineWatch(self)
        self.batches = BatchLane(
            self, self.settings["max_batch_size"], self.settings["batch_timeout"]
        )
        self.keys.pool.forget_in_flight()
        self.breaker.forget_in_flight()
        after_fork = getattr(self.transport, "after_fork", None)
        if after_fork is not None:
            after_fork()

    @property
    def api_key(self) -> str | None:
        """The seed's single key (other keys: ``keys``)."""
        return self.keys.default_secret

    @api_key.setter
    def api_key(self, value: str | None) -> None:
        self.keys.set_default(value, self.clock.now())
        self.wake()

    # ------------------------------------------------------------ options

    def _breaker_options(self) -> BreakerOptions:
        return BreakerOptions(
            **{field: self.settings[name] for name, field in _BREAKER_SETTINGS.items()}
        )

    def _retry_options(self) -> retry_policy.RetryOptions:
        return retry_policy.RetryOptions(
            retryable_statuses=retry_policy.RETRYABLE_STATUSES
            | self.provider.spec.extra_retryable_statuses,
            **{field: self.settings[name] for name, field in _RETRY_SETTINGS.items()},
        )

    def _on_setting(self, name: str, value: Any) -> None:
        if name in _BREAKER_SETTINGS:
            self.breaker.options = self.keys.pool.breaker_options = (
                self._breaker_options()
            )  # each key's breaker too
            if not self.closed:
                self._call_soon(self._rearm_circuit)  # a new reset_timeout moves the next probe
        elif name in _RETRY_SETTINGS:
            self.retry_options = self._retry_options()
            self.keys.pool.default_cooldown = self.settings["initial_retry_delay"]
            self.keys.pool.max_cooldown = self.settings["max_retry_after"]
        elif name == "queue_size":
            self.queue.maxsize = value
        elif name == "queue_aging_interval":
            self.queue.aging_interval = value
        elif name == "max_batch_size":
            self.batches.assembler.max_batch_size = value
        elif name == "batch_timeout":
            self.batches.assembler.batch_timeout = value
        elif name == "key_strategy":
            self.keys.pool.strategy = value
        elif name == "max_concurrent_requests" and not self.closed:
            self.wake()  # a raised limit lets queued requests go now

    def _on_breaker_transition(self, old: str, new: str, now: float) -> None:
        self.stats.record_breaker_transition(old, new, self.clock.wall())
        last = self.last_failure
        cause = (
            f" (last failure: {type(last).__name__}: {last.message})"
            if new == STATE_OPEN and last is not None
            else ""
        )
        log.warning("%s circuit %s -> %s%s", self.provider.name, old, new, cause)

    # ---------------------------------------------------------- admission

    def batch_inputs(self, endpoint: str, data: Any) -> list | None:
        """The inputs of a request that goes through the batch lane, else None."""
        if not self.settings["batching_enabled"] or not isinstance(data, dict):
            return None
        if (
            not self.provider.spec.batch_any_model
            and self.provider.request_model(endpoint, data) not in self.supported_batch_models
        ):
            return None
        return self.provider.batch_inputs(endpoint, data)

    def submit(self, req: Request) -> Request:
        """Admit a request (any thread).  Raises at once when it cannot be
        queued: ``ShutdownError``, ``CircuitOpenError``, ``QueueFullError``."""
        if self.closed:
            raise ShutdownError(
                f"{self.provider.name} backend is closed; create a new client",
                provider=self.provider.name,
            )
        now = self.clock.now()
        if self._must_fail_fast(req, now):
            self.stats.record_rejected("circuit_open")
            raise self._circuit_open_error(now, req)
        req.context = contextvars.copy_context()  # its attempts see the caller's context variables
        queue = self.queue
        with queue.lock:
            try:
                queue.ensure_room(self.batches.pending + self._held_count)
                if req.inputs is None:
                    req.entry = queue.push(req, req.priority, now)
            except QueueFullError as exc:
                self.stats.record_rejected("queue_full")
                self.annotate(exc, req)
                raise
            if req.inputs is not None:  # batchable: the loop takes it to the assembler
                self.batches.admit(req)
            else:
                self.deadlines.watch(req.entry, req.deadline)
            req.future._canceller = lambda: self._call_soon(self._cancel, req)
            wake = self._claim_wake()
        if wake:  # outside the lock: waking the loop writes to its self-pipe
            self._call_soon(self._pump)
        return req

    def _circuit_open_error(self, now: float, req: Request | None = None) -> CircuitOpenError:
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
            advice = (
                f"failing fast, next probe in {wait:.1f}s (opened {_times(snap.get('times_opened', 0))} so far); see "
                "client.failure_threshold and client.reset_timeout, or on_circuit_open='wait' to wait for the probe"
            )
        error = CircuitOpenError(f"{why}; {advice}", provider=self.provider.name, retry_after=wait)
        error.__cause__ = last
        if req is not None:
            self.annotate(error, req)
        return error

    def wake(self) -> None:
        """Have the loop run the pump soon (once, however many ask)."""
        with self.queue.lock:
            wake = self._claim_wake()
        if wake:
            self._call_soon(self._pump)

    def _claim_wake(self) -> bool:
        """(under queue.lock) True for the one caller that must wake the loop."""
        if self._wake_pending:
            return False
        self._wake_pending = True
        return True

    def _call_soon(self, fn, *args) -> None:
        if in_engine_thread():
            self.loop.call_soon(fn, *args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    # --------------------------------------------------------------- pump

    def _pump(self) -> None:
        queue = self.queue
        with queue.lock:
            self._wake_pending = False
        now = self.clock.now()
        self.batches.assemble(now)
        limit = self.settings["max_concurrent_requests"]
        breaker = self.breaker
        while self.in_flight < limit and len(queue):
            permit = breaker.acquire(now)
            if permit is None:
                if breaker.state(now) == STATE_OPEN:
                    self._hold_for_circuit(now)
                break  # HALF_OPEN with its probes out: the rest wait for their verdict
            entry = queue.pop(now)
            if entry is None or entry.item.future.done():
                breaker.on_ignored(now, permit=permit)
                continue
            req: Request = entry.item
            req.lease = self.keys.lease(req, now, self.rng)
            if req.lease is None:  # no key may take it now
                breaker.on_ignored(now, permit=permit)
                ready = self.keys.readiness(req, now)
                if ready is not None and req.deadline is not None and ready.at > req.deadline:
                    self.finish(
                        req, None, self._no_key_error(req, ready, now)
                    )  # waiting cannot help: say why now
                    continue
                if ready is not None and not ready.busy and self.keys.free_for_others(req, now):
                    self._hold(
                        req, max(ready.at - now, _MIN_HOLD)
                    )  # only its model is cooling: the others go on
                    continue
                with queue.lock:  # it keeps its place and waits
                    queue.requeue(entry, now)
                self._wait_for_key(req, now, ready)
                break
            hold = AttemptHold(
                self, permit, req.lease
            )  # from here on it owns the permit, the lease and the slot
            self.in_flight += 1
            context = (
                req.context if req.context is not None else contextvars.Context()
            )  # a batch runs in no caller's
            task = start_task(self.loop, self._run(req, hold), context)
            req.task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(
                hold.on_task_done
            )  # a task cancelled before it ran still gives all back
        self.deadlines.arm(now)

    # ------------------------------------------------------------ attempt

    def _wait_for_key(self, req: Request, now: float, ready: Readiness | None) -> None:
        """Wake the pump when some key can take ``req``; fail what is queued
        when no key ever will (every key disabled)."""
        if ready is None:
            error = self.keys.all_disabled_error(self.provider.name, now)
            if error is not None:
                self._fail_queued(now, lambda r: error)
            return
        if ready.busy and ready.at <= now:
            return  # a key frees when its attempt finishes, which runs the pump
        if self._key_timer is not None:
            self._key_timer.cancel()
        self._key_timer = self.loop.call_later(max(0.0, ready.at - now), self._on_key_ready)

    def _hold(self, req: Request, delay: float) -> None:
        """Take ``req`` out of the queue for ``delay`` seconds, then back at its
        old place; meanwhile it still counts against ``queue_size``."""
        with self.queue.lock:
            self._held_count += 1
        self._held.add(req)
        self._backing_off.add(req)
        req.timer = self.loop.call_later(delay, self._requeue, req)

    def _off_timer(self, req: Request) -> None:
        """(loop) ``req`` waits on its timer no more (it fired, or was cancelled)."""
        req.timer = None
        self._backing_off.discard(req)
        if req in self._held:
            self._held.discard(req)
            with self.queue.lock:
                self._held_count -= 1

    def _no_key_error(self, req: Request, ready: Readiness, now: float) -> ApiError:
        """The error of a request no key can take before its deadline."""
        wait, left = ready.at - now, max(0.0, req.deadline - now)
        fix = (
            "raise client.request_deadline, add a key with client.add_api_key(), or lower the load"
        )
        if ready.reason == REASON_BREAKER:
            error: ApiError = CircuitOpenError(
                f"the circuit of key {ready.key} is OPEN for another {retry_policy.seconds_text(wait)}, past this "
                f"request's deadline in {retry_policy.seconds_text(left)}; {fix}",
                provider=self.provider.name,
                retry_after=wait,
            )
        else:
            held = _HELD_BY.get(ready.reason, ready.reason)
            asked = getattr(req.last_error, "retry_after", None)
            if (
                ready.reason in (REASON_COOLING, REASON_KEY_COOLING)
                and retry_policy.believed_retry_after(asked, self.retry_options.max_retry_after)
                is not None
            ):
                held += ", as its Retry-After asked"
            model = f"model {req.model}" if req.model is not None else "this request"
            error = RateLimitDeadlineError(
                f"rate limited: no key may send {model} for another {retry_policy.seconds_text(wait)} ({held}), "
                f"past this request's deadline in {retry_policy.seconds_text(left)}; {fix}",
                provider=self.provider.name,
                status=getattr(req.last_error, "status", None),
                retry_after=wait,
            )
        error.key_name = ready.key
        error.__cause__ = req.last_error
        return error

    def _on_key_ready(self) -> None:
        self._key_timer = None
        self._pump()

    def _fail_queued(self, now: float, error_for=None, keep=None) -> None:
        """What is queued fails fast: the circuit is OPEN (or ``error_for(req)``);
        what ``keep(req)`` approves goes back to its place instead."""
        with self.queue.lock:
            entries = self.queue.drain()
            for entry in entries:
                if keep is not None and keep(entry.item):
                    self.queue.requeue(entry, now)
        for entry in entries:
            req = entry.item
            if not req.future.done() and not entry.alive:
                error = (
                    copied(error_for(req))
                    if error_for is not None
                    else self._circuit_open_error(now, req)
                )
                if error.__cause__ is None:
                    error.__cause__ = (
                        req.last_error
                    )  # what failed before, when it was waiting to retry
                self.finish(req, None, error)

    # ------------------------------------------------------------ circuit

    def _probe_in_time(self, req: Request, now: float) -> bool:
        """Whether the circuit's next probe comes before ``req``'s deadline."""
        return req.deadline is None or now + self.breaker.retry_in(now) <= req.deadline

    def _hold_for_circuit(self, now: float) -> None:
        """(loop) The circuit is OPEN.  Once an opening, what may not wait
        fails, and so does what would wait past its deadline; the rest stay
        queued in their order.  One timer wakes the pump at the probe: no
        polling."""
        snap = self.breaker.snapshot(now)
        probe_at = snap["opened_at"] + snap["reset_timeout"]
        if (
            self._swept_opening != snap["opened_at"]
        ):  # a request entering while OPEN is judged as it enters
            self._swept_opening = snap["opened_at"]
            self._fail_queued(
                now,
                keep=lambda req: (
                    req.circuit_wait and (req.deadline is None or probe_at <= req.deadline)
                ),
            )
        if self._circuit_timer is None:
            self._circuit_timer = self.loop.call_later(
                max(0.0, probe_at - now), self._on_probe_time
            )

    def queued_deadline_error(self, req: Request, now: float) -> ApiError:
        """(loop) The error of a request whose deadline passed in the queue,
        saying what held it: the circuit, a rate limit, or the attempts in flight."""
        deadline = f"request deadline of {req.deadline - req.submitted_at:.2f}s passed while it waited in the queue"
        fix = "raise client.request_deadline, client.max_concurrent_requests, or lower the load"
        state = self.breaker.state(now)
        if state != STATE_CLOSED:
            last = self.last_failure
            behind = (
                f"; last failure: {type(last).__name__}: {last.message}" if last is not None else ""
            )
            error: ApiError = DeadlineExceededError(
                f"{deadline} for the circuit ({state}{behind}); {fix}", provider=self.provider.name
            )
        else:
            ready = self.keys.readiness(req, now)
            if ready is not None and ready.at > now and ready.reason not in (None, REASON_BREAKER):
                return self._no_key_error(req, ready, now)
            flight, limit = self.in_flight, self.settings["max_concurrent_requests"]
            error = DeadlineExceededError(
                f"{deadline} behind {flight} attempt{'' if flight == 1 else 's'} in flight "
                f"(max_concurrent_requests {limit}); {fix}",
                provider=self.provider.name,
            )
        error.__cause__ = req.last_error  # what it was waiting to retry, if anything
        return error

    def _rearm_circuit(self) -> None:
        if self._circuit_timer is not None:
            self._circuit_timer.cancel()
            self._circuit_timer = None
        self._pump()

    def _on_probe_time(self) -> None:
        self._circuit_timer = None
        self._pump()

    async def _run(self, req: Request, hold: AttemptHold) -> None:
        """One attempt, then: complete, or schedule the retry.

        The attempt's slot, breaker permit and key lease belong to ``hold``,
        given back in one ``finally`` whatever raised."""
        result: Any = None
        error: BaseException | None = None
        usage = (0, 0)
        stood_down = req.future.done()  # cancelled before this task got to run
        req.running = True
        try:
            if stood_down:
                error = CancelledRequestError("cancelled")
            else:
                result = await self._attempt(req, hold)
                if result is not None:
                    usage = self.usage_of(result)
        except asyncio.CancelledError:
            error = (
                ShutdownError("backend closed during the attempt")
                if self.closed
                else CancelledRequestError(
                    "request cancelled by the caller", request_id=req.request_id
                )
            )
        except Exception as exc:  # an ApiError; or not a service outcome (a bug): handed over as it is, not retried
            error = exc
        finally:
            req.task = None
            req.running = False
            req.lease = None
            hold.release(self.clock.now(), error, usage, self._cooldown(req, error))
        if stood_down:
            self._pump()
            return
        if error is None:
            if not req.stream:
                self.finish(req, result, None, usage)
        elif isinstance(error, (CancelledRequestError, ShutdownError)) or not isinstance(
            error, ApiError
        ):
            self.finish(req, None, error)
        else:
            self._after_failure(req, error)
        if not self.closed:
            self._pump()

    async def _attempt(self, req: Request, hold: AttemptHold) -> Any:
        """One HTTP try: its result, or its typed error (recorded here once
        the request is sent).  What it holds, ``hold`` gives back."""
        clock = self.clock
        now = clock.now()
        if req.first_attempt_at is None:
            req.first_attempt_at = now
        if req.deadline is not None and now >= req.deadline:
            raise DeadlineExceededError(
                f"request deadline passed after {now - req.submitted_at:.2f}s (waited in queue); "
                "raise client.request_deadline or lower the load",
                provider=self.provider.name,
                request_id=req.request_id,
            )
        req.attempts += 1
        timeout = self.settings["timeout"] if req.options.timeout is None else req.options.timeout
        req.cut_at = None
        if req.deadline is not None and req.deadline - now < timeout:
            timeout, req.cut_at = (
                max(0.001, req.deadline - now),
                req.deadline,
            )  # the deadline bounds this attempt
        key_name = req.last_key = req.lease.name
        api_key = req.api_key or self.keys.secret(key_name)
        http_request = self.provider.build_request(
            req.endpoint,
            req.data,
            api_key=api_key,
            base_url=self.keys.base_url(key_name) or self.base_url,
            timeout=timeout,
            stream=req.stream,
            request_id=req.request_id,
            extra_headers=req.options.extra_headers,
            extra_query=req.options.extra_query,
        )
        http_request.max_body_bytes = self.settings["max_response_bytes"]
        http_request.max_line_bytes = self.settings["max_stream_line_bytes"]
        started = clock.now()
        secrets = _Secrets(
            api_key, req.options
        )  # what a server may echo back, read on an error only
        if req.stream:
            return await self._attempt_stream(req, hold, http_request, secrets, started, timeout)
        try:
            response = await self._send(req, http_request)
            if response.ok:
                result = self.parsed(self.provider.parse_response, req.endpoint, response)
            else:  # a status the provider reads as an answer (see _send)
                result = self.parsed(self.provider.answer_for_status, req.endpoint, response)
        except ApiError as error:
            error.redact(secrets)  # servers echo the key they were sent
            error.attempt = error.attempt or req.attempts
            self._record_attempt(error, started, key_name, error.status, hold)
            raise
        self._record_attempt(None, started, key_name, response.status, hold)
        return result

    def parsed(self, read: Any, *args: Any, **kwargs: Any) -> Any:
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
            figures = tuple(self.provider.usage(result))
        except Exception as exc:
            why = f"{type(exc).__name__}"
        else:
            if len(figures) == 2 and all(_believable(n) for n in figures):
                return figures
            why = "not whole numbers from 0 to MAX_TOKEN_COUNT"
        log.warning(
            "%s: the response's token usage could not be read (%s); its tokens count as 0",
            self.provider.name,
            why,
        )
        return 0, 0

    async def _send(self, req: Request, http_request: Any) -> Any:
        """One HTTP exchange: the 2xx response (or a non-2xx the provider
        reads as an answer: ``answer_for_status``), or its typed error (never
        recorded here)."""
        try:
            response = await self.transport.send(http_request)
        except (OSError, asyncio.TimeoutError) as exc:
            raise classify_exception(
                exc, provider=self.provider.name, request_id=req.request_id, attempt=req.attempts
            ) from exc
        self.keys.hints(req.last_key, self.provider, response.headers, self.clock.now(), req.model)
        if not response.ok and (
            req.stream
            or self.parsed(self.provider.answer_for_status, req.endpoint, response) is None
        ):
            if isinstance(
                response, StreamResponse
            ):  # pragma: no cover - transports read error bodies whole
                await response.aclose()
            error = self.parsed(
                self.provider.error_for, response, wall_now=self.clock.wall(), attempt=req.attempts
            )
            error.request_id = error.request_id or req.request_id
            raise error
        return response

    def _record_attempt(
        self,
        error: ApiError | None,
        started: float,
        key_name: str | None,
        status: int | None,
        hold: AttemptHold,
    ) -> None:
        now = self.clock.now()
        duration = now - started
        if error is None and (status is None or status < 300):
            hold.report(SUCCESS, now, duration)
        elif error is None:  # a non-2xx answer ("not ready"): neither a success nor a failure
            hold.report(IGNORED, now)
        elif error.breaker_failure:
            self.last_failure = error
            hold.report(FAILURE, now, duration)
        else:
            hold.report(IGNORED, now)
        self.stats.record_attempt(
            key_name=key_name,
            status=status,
            error_kind=error.kind if error is not None else None,
            latency=duration,
        )

    # ------------------------------------------------------------ streams

    async def _attempt_stream(
        self,
        req: Request,
        hold: AttemptHold,
        http_request: Any,
        secrets: _Secrets,
        started: float,
        timeout: float,
    ) -> None:
        """A streaming attempt.  Until its first chunk it is like any attempt:
        a failure, a malformed event or no chunk within ``timeout`` is
        recorded and raised, so the request is retried (on another key
        when one is free).  Once a chunk has arrived the caller gets the
        stream, and :meth:`_feed` carries it to its end."""
        watch = StallWatch(self.loop, asyncio.current_task(), timeout)
        response = None
        started_ok = False
        try:
            try:
                response = await self._send(req, http_request)
                events = _decode(self.provider, response, http_request.max_line_bytes)
                chunk, done = await self._next_chunk(events)
            except asyncio.CancelledError:
                if not watch.timed_out():
                    raise
                error: ApiError = RequestTimeoutError(
                    f"no stream chunk within {timeout:g}s of sending (see client.timeout)",
                    provider=self.provider.name,
                    request_id=req.request_id,
                    attempt=req.attempts,
                )
                self._record_attempt(error, started, req.last_key, None, hold)
                raise error from None
            except ApiError as error:
                error.redact(secrets)
                error.attempt = error.attempt or req.attempts
                self._record_attempt(error, started, req.last_key, error.status, hold)
                raise
            started_ok = True
        finally:
            if (
                not started_ok
            ):  # whatever ended it before its first chunk: the stream is closed here
                watch.stop()
                if response is not None:
                    await response.aclose()
        self._record_attempt(
            None, started, req.last_key, response.status, hold
        )  # started: a success for the breaker
        await self._feed(req, response, events, chunk, done, watch, secrets)

    async def _next_chunk(self, events: Any) -> tuple[Any, bool]:
        """The next chunk the provider hands over (skipping pings and the
        like), and whether the stream is complete after it."""
        parse = self.provider.parse_stream_event
        while True:
            try:
                event = await anext(events)
            except StopAsyncIteration:
                raise NetworkError(
                    "stream ended without its end marker", provider=self.provider.name
                ) from None
            except ApiError:
                raise
            except (
                Exception
            ) as exc:  # a transport that did not translate its own: said in our words
                raise NetworkError(
                    f"the stream broke ({type(exc).__name__}: {exc})", provider=self.provider.name
                ) from exc
            chunk, done = self.parsed(parse, event)
            if chunk is not None or done:
                return chunk, done

    async def _feed(
        self,
        req: Request,
        response: StreamResponse,
        events: Any,
        chunk: Any,
        done: bool,
        watch: StallWatch,
        secrets: _Secrets,
    ) -> None:
        """Hand the stream to the caller and feed it until its end.

        The feeder keeps only the stream's channel, never the stream itself,
        so a stream the caller drops is collected and its close aborts this.
        """
        task = asyncio.current_task()
        stream = ChunkStream(req.request_id, lambda: self._call_soon(_cancel_task, task))
        channel = stream.channel
        req.future._complete(stream, None, req.attempts, self.key_name(req))
        del stream
        stall = self.settings["stream_stall_timeout"]
        progress = StreamProgress(self.clock.now())
        watch.restart(stall)
        error: ApiError | None = None
        try:
            while True:
                if chunk is not None:
                    item = self.parsed(progress.chunk, self.provider, chunk)
                    if channel.put(
                        item
                    ):  # the caller has fallen behind: wait for it, not for the server
                        watch.pause()
                        await channel.room()
                        watch.resume()
                if done:
                    break
                chunk, done = await self._next_chunk(events)
                watch.touch()
        except asyncio.CancelledError:
            if not watch.timed_out():
                watch.stop()
                closed = CancelledRequestError(
                    "stream closed by the caller", request_id=req.request_id
                )
                self._record_stream(req, progress, closed)
                channel.put(closed)
                await response.aclose()
                raise
            error = StreamStalledError(
                f"stream stalled: no chunk for {stall:g}s (see client.stream_stall_timeout)",
                provider=self.provider.name,
                attempt=req.attempts,
            )
        except ApiError as exc:
            error = exc.redact(secrets)  # an error event may quote the key too
        except Exception as exc:  # whatever else: the caller still hears how its stream ended
            error = MalformedResponseError(
                f"the stream could not be read ({type(exc).__name__}: {exc})",
                provider=self.provider.name,
            )
            error.__cause__ = exc
            error = error.redact(secrets)
        watch.stop()
        await response.aclose()
        if error is not None:
            error = self.annotate(error, req)
            error.attempt = error.attempt or req.attempts
            error.chunks_received, error.partial_text = progress.count, progress.text()
            error.message = f"{error.message} (stream ended after {progress.count} chunks, {progress.chars} characters of text)"
        self._record_stream(
            req, progress, error
        )  # before the caller sees the end, so its get_stats() includes it
        channel.put(error if error is not None else END_OF_STREAM)

    def _record_stream(
        self, req: Request, progress: StreamProgress, error: BaseException | None
    ) -> None:
        now = self.clock.now()
        usage = progress.usage
        self.stats.record_request(
            RequestRecord(
                success=error is None,
                latency=now - req.submitted_at,
                queue_wait=(req.first_attempt_at or now) - req.submitted_at,
                attempts=req.attempts,
                model=req.model,
                error_kind=getattr(error, "kind", None) if error is not None else None,
                tokens_in=usage[0],
                tokens_out=usage[1],
                key_name=self.key_name(req),
                endpoint=req.endpoint,
            )
        )
        self.stats.record_stream(
            outcome="completed" if error is None else getattr(error, "kind", "error"),
            time_to_first_token=progress.started - req.submitted_at,
            output_tokens=progress.output_tokens(),
            generation_seconds=now - progress.started,
        )

    # ------------------------------------------------------------ retries

    def _retry_options_for(self, req: Request) -> retry_policy.RetryOptions:
        """The client's retry options, with the request's own ``max_retries`` when it has one."""
        if req.options.max_retries is None:
            return self.retry_options
        return dataclasses.replace(self.retry_options, max_retries=req.options.max_retries)

    def _cut_by_deadline(self, req: Request, error: ApiError) -> DeadlineExceededError:
        """The error of an attempt the request's deadline cut short."""
        cut = DeadlineExceededError(
            f"request deadline of {req.deadline - req.submitted_at:.2f}s passed during attempt {req.attempts} "
            "(no answer by then); raise client.request_deadline, or lower client.timeout so that retries fit in it",
            provider=self.provider.name,
            request_id=error.request_id,
            attempt=req.attempts,
        )
        cut.__cause__ = error
        return cut

    def _cooldown(self, req: Request, error: BaseException | None) -> float | None:
        """How long a 429 without a believable Retry-After (none, or one over
        max_retry_after) cools its (key, model): the retry policy's backoff
        for the retry it leads to."""
        if (
            isinstance(error, RateLimitError)
            and retry_policy.believed_retry_after(
                error.retry_after, self.retry_options.max_retry_after
            )
            is None
        ):
            return retry_policy.backoff_delay(req.retries + 1, self.retry_options, self.rng)
        return None

    def _after_failure(self, req: Request, error: ApiError) -> None:
        now = self.clock.now()
        if type(error) is RequestTimeoutError and req.cut_at is not None and now >= req.cut_at:
            self.finish(
                req, None, self._cut_by_deadline(req, error)
            )  # the deadline, not the server, ended it
            return
        options = self._retry_options_for(req)
        if isinstance(error, RateLimitError) and req.last_key is not None:
            # its (key, model) cools now; back in the queue, it goes on the first key
            # free for its model, waits for one within its deadline, or fails at once
            req.avoid_key = req.last_key
            if (
                retry_policy.is_retryable(error, options)
                and req.retries < options.max_retries
                and not self.closed
            ):
                req.retries += 1
                req.last_error = error
                log.debug(
                    "%s request %s: HTTP 429 on key %s; retry %d/%d",
                    self.provider.name,
                    req.request_id,
                    req.last_key,
                    req.retries,
                    options.max_retries,
                )
                self._requeue(req)
                return
        if (
            isinstance(error, AuthenticationError)
            and req.last_key is not None
            and self.keys.another_usable(req.last_key, req, now)
        ):
            req.retries += 1  # that key is disabled now; the request moves on to one that may work
            req.last_error = error
            self._requeue(req)
            return
        decision = retry_policy.decide(error, req.retries, options, self.rng, now, req.deadline)
        if not decision.retry or self.closed:
            if decision.reason == "deadline":
                error = retry_policy.deadline_error(error, decision, now, req.deadline)
                error.request_id = req.request_id
            self.finish(req, None, error)
            return
        req.retries += 1
        req.last_error = error
        log.debug(
            "%s request %s: %s; retry %d/%d in %.3fs (%s)",
            self.provider.name,
            req.request_id,
            type(error).__name__,
            req.retries,
            options.max_retries,
            decision.delay,
            decision.reason,
        )
        self._backing_off.add(req)
        req.timer = self.loop.call_later(decision.delay, self._requeue, req)

    def _requeue(self, req: Request) -> None:
        self._off_timer(req)
        if req.future.done() or self.closed:
            return
        now = self.clock.now()
        if self._must_fail_fast(req, now):
            self.finish(req, None, self._circuit_open_error(now, req))
            return
        with self.queue.lock:
            self.queue.requeue(req.entry, now)
            self.deadlines.watch(req.entry, req.deadline)
        self._pump()

    def _must_fail_fast(self, req: Request, now: float) -> bool:
        """Whether ``req``, entering the queue now, must fail for an OPEN circuit."""
        return self.breaker.state(now) == STATE_OPEN and not (
            req.circuit_wait and self._probe_in_time(req, now)
        )

    # ------------------------------------------------------------ batches

    def flush_batches(self) -> int:
        """(loop) Send every open batch now, without waiting for its timeout."""
        sent = self.batches.flush(self.clock.now())
        self._pump()
        return sent

    def enqueue_carrier(self, carrier: Request, admitted: int, now: float) -> None:
        """(loop) Queue a batch's carrier in place of its ``admitted`` members."""
        error: ApiError | None = (
            self._circuit_open_error(now) if self._must_fail_fast(carrier, now) else None
        )
        with self.queue.lock:
            self.batches.pending -= admitted
            try:
                if error is None:
                    carrier.entry = self.queue.push(carrier, carrier.priority, now)
            except QueueFullError as exc:  # only when queue_size was lowered meanwhile
                error = exc
            else:
                if error is None:
                    self.deadlines.watch(carrier.entry, carrier.deadline)
        for req, _ in carrier.members:
            req.entry = carrier.entry
        if error is not None:
            self.finish(carrier, None, error)

    # ------------------------------------------------------------- finish

    def finish(
        self,
        req: Request,
        result: Any,
        error: BaseException | None,
        usage: tuple[int, int] | None = None,
    ) -> None:
        if req.members is not None:
            self.batches.finish(req, result, error)
            return
        if req.future.done():  # futures complete only on this loop: no other can slip in between
            return
        if isinstance(error, ApiError):
            error = self.annotate(error, req)
        self.record_request(
            req, result, error, self.clock.now(), usage=usage
        )  # before the caller wakes and reads the stats
        req.future._complete(result, error, req.attempts, self.key_name(req))

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
            or _host(self.keys.base_url(key) if key is not None else None)
            or _host(self.base_url)
        )
        error.attempts = req.attempts
        error.client_request_id = req.request_id
        error.request_id = error.request_id or req.request_id
        return error

    def key_name(self, req: Request) -> str | None:
        """The key a request went out on (its name; a fingerprint for the seed's key)."""
        return req.last_key

    def record_request(
        self,
        req: Request,
        result: Any,
        error: BaseException | None,
        now: float,
        attempts: int | None = None,
        usage: tuple[int, int] | None = None,
    ) -> None:
        if usage is None:
            usage = self.usage_of(result) if error is None else (0, 0)
        tokens_in, tokens_out = usage
        first = req.first_attempt_at if req.first_attempt_at is not None else now
        self.stats.record_request(
            RequestRecord(
                success=error is None,
                latency=now - req.submitted_at,
                queue_wait=max(0.0, first - req.submitted_at),
                attempts=attempts if attempts is not None else req.attempts,
                model=req.model,
                error_kind=getattr(error, "kind", type(error).__name__)
                if error is not None
                else None,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                key_name=self.key_name(req),
                endpoint=req.endpoint,
            )
        )

    # ----------------------------------------------------------- cancel

    def _cancel(self, req: Request) -> None:
        if req.future.done():
            return
        error = CancelledRequestError("request cancelled by the caller", request_id=req.request_id)
        if req.task is not None and req.members is None and req.running:
            req.task.cancel()  # abort the attempt; _run completes the future
            return
        # a task that has not started is not cancelled (that would skip its
        # cleanup): completing the future below makes it stand down when it starts
        if req.member is not None:
            self.batches.remove(req)
        elif req.timer is not None:
            req.timer.cancel()
            self._off_timer(req)
        elif req.entry is not None and req.inputs is None:
            with self.queue.lock:
                self.queue.remove(req.entry)
        self.finish(req, None, error)

    # ------------------------------------------------------------ close

    async def aclose(self, grace: float = 5.0) -> None:
        """Refuse new requests, fail every queued one with ``ShutdownError``,
        give attempts in flight ``grace`` seconds, then cancel them."""
        if self.closed:
            return
        self.closed = True
        shutdown = ShutdownError(
            f"{self.provider.name} backend closed before the request was sent",
            provider=self.provider.name,
        )
        with self.queue.lock:
            entries = self.queue.drain()
        self.deadlines.clear()
        for timer in (self._key_timer, self._circuit_timer):
            if timer is not None:
                timer.cancel()
        pending = [entry.item for entry in entries] + self.batches.drain()
        for req in list(self._backing_off):
            req.timer.cancel()
            self._off_timer(req)
            pending.append(req)
        for req in pending:
            self.finish(req, None, shutdown)
        tasks = list(self._tasks)
        if tasks:
            _, still = await asyncio.wait(tasks, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        await self.transport.aclose()

    async def aclose_from_any_loop(self, grace: float = 5.0) -> None:
        """:meth:`aclose` awaited from any event loop (the engine's or another)."""
        if self.closed:
            return
        if in_engine_thread():
            await self.aclose(grace)
        elif not self._loop_alive():
            self.closed = True
        else:
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self.aclose(grace), self.loop)
            )

    def close(self, grace: float = 5.0) -> None:
        if self.closed:
            return
        if in_engine_thread():
            raise RuntimeError(
                "close() called from the engine's own loop; use 'await backend.aclose()'"
            )
        if not self._loop_alive():
            self.closed = True
            return
        asyncio.run_coroutine_threadsafe(self.aclose(grace), self.loop).result(grace + 10.0)

    # ---------------------------------------------------------- inspect

    def snapshot(self) -> dict:
        now = self.clock.now()
        with self.queue.lock:
            queued = len(self.queue)
            by_priority = self.queue.counts()
            batch_pending = self.batches.pending
        return {
            "queue_size": queued + batch_pending,
            "queue_by_priority": by_priority,
            "queue_capacity": self.queue.maxsize,
            "batch_pending": batch_pending,
            "in_flight": self.in_flight,
            "max_concurrent_requests": self.settings["max_concurrent_requests"],
            "backing_off": len(self._backing_off),
            "circuit_breaker": self.breaker.snapshot(now),
            "key_pool": self.keys.snapshot(now),
        }


def _times(count: int) -> str:
    return f"{count} time{'' if count == 1 else 's'}"


class _Secrets:
    """An attempt's key and the values of its extra headers and query, for
    redacting what the server says; iterated only when there is an error."""

    __slots__ = ("api_key", "options")

    def __init__(self, api_key: str | None, options: Any) -> None:
        self.api_key, self.options = api_key, options

    def __iter__(self) -> Iterator[str | None]:
        yield self.api_key
        yield from self.options.secrets()


@functools.lru_cache(maxsize=64)
def _host(url: str | None) -> str | None:
    """``host:port`` of a base URL, for errors."""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return None
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}" if port else host


def _decode(provider: Any, response: StreamResponse, max_event_bytes: int | None) -> Any:
    """The response's events, decoded by the provider's stream format."""
    if provider.stream_format == "sse":
        return iter_sse(response.lines(), max_event_bytes)
    return iter_ndjson(response.lines())


MAX_TOKEN_COUNT = 10**12
"""The most tokens a usage figure may say and still be believed."""


def _believable(count: Any) -> bool:
    """A token count as a whole number from 0 to MAX_TOKEN_COUNT (not a bool, a float, a string)."""
    return isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= MAX_TOKEN_COUNT


def _cancel_task(task: asyncio.Task | None) -> None:
    if task is not None and not task.done():
        task.cancel()
