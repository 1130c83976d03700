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
import dataclasses
import logging
import random
from typing import Any, Optional

from ..resilience import retry as retry_policy
from ..resilience.breaker import STATE_OPEN, BreakerOptions, CircuitBreaker
from ..resilience.clock import SYSTEM_CLOCK, Clock
from ..resilience.errors import (
    ApiError,
    CancelledRequestError,
    CircuitOpenError,
    AuthenticationError,
    DeadlineExceededError,
    NetworkError,
    RateLimitError,
    QueueFullError,
    RequestTimeoutError,
    ShutdownError,
    StreamStalledError,
    classify_exception,
)
from ..resilience.priority_queue import PriorityRequestQueue
from ..resilience.stats import RequestRecord, StatsCollector
from ..transport.base import StreamResponse, Transport
from ..transport.sse import iter_ndjson, iter_sse
from .batches import BatchLane
from .keyring import KeyRing, key_fingerprint
from .deadlines import DeadlineWatch, StallWatch
from .loop import engine_loop, in_engine_thread
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
_RETRY_SETTINGS = {
    "max_retries": "max_retries",
    "backoff_factor": "backoff_factor",
    "initial_retry_delay": "initial_delay",
    "max_retry_delay": "max_delay",
    "retry_jitter": "jitter",
}


class Engine:
    """One backend's queue, dispatcher, batch lane, breaker and stats."""

    def __init__(
        self,
        provider: Any,
        settings: Settings,
        *,
        base_url: str,
        api_key: Optional[str],
        transport: Optional[Transport] = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: Optional[random.Random] = None,
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
        self._engine_loop = engine_loop()
        self.loop = self._engine_loop.loop

        self.queue = PriorityRequestQueue(settings["queue_size"], settings["queue_aging_interval"])
        self.breaker = CircuitBreaker(self._breaker_options())
        self.breaker.add_listener(self._on_breaker_transition)
        self.keys = KeyRing(settings["key_strategy"], self._breaker_options(), clock.now())
        self.keys.set_default(api_key, clock.now())
        self.retry_options = self._retry_options()
        self.stats = StatsCollector()
        self.batches = BatchLane(self, settings["max_batch_size"], settings["batch_timeout"])
        settings.add_listener(self._on_setting)

        self.in_flight = 0
        self.closed = False
        # shared with callers' threads, guarded by queue.lock
        self._wake_pending = False
        # loop-only
        self.deadlines = DeadlineWatch(self)
        self._backing_off: set[Request] = set()
        self._key_timer: Optional[asyncio.TimerHandle] = None
        self._tasks: set[asyncio.Task] = set()
        self.supported_batch_models: frozenset[str] = frozenset()

    @property
    def api_key(self) -> Optional[str]:
        """The seed's single key (other keys: ``keys``)."""
        return self.keys.default_secret

    @api_key.setter
    def api_key(self, value: Optional[str]) -> None:
        self.keys.set_default(value, self.clock.now())
        self.wake()

    # ------------------------------------------------------------ options

    def _breaker_options(self) -> BreakerOptions:
        return BreakerOptions(**{field: self.settings[name] for name, field in _BREAKER_SETTINGS.items()})

    def _retry_options(self) -> retry_policy.RetryOptions:
        return retry_policy.RetryOptions(
            retryable_statuses=retry_policy.RETRYABLE_STATUSES | self.provider.spec.extra_retryable_statuses,
            **{field: self.settings[name] for name, field in _RETRY_SETTINGS.items()},
        )

    def _on_setting(self, name: str, value: Any) -> None:
        if name in _BREAKER_SETTINGS:
            self.breaker.options = self._breaker_options()
        elif name in _RETRY_SETTINGS:
            self.retry_options = self._retry_options()
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
        level = logging.WARNING if new == STATE_OPEN else logging.INFO
        log.log(level, "%s circuit %s -> %s", self.provider.name, old, new)

    # ---------------------------------------------------------- admission

    def batch_inputs(self, endpoint: str, data: Any) -> Optional[list]:
        """The inputs of a request that goes through the batch lane, else None."""
        if not self.settings["batching_enabled"] or not isinstance(data, dict):
            return None
        if not self.provider.spec.batch_any_model and self.provider.request_model(endpoint, data) not in self.supported_batch_models:
            return None
        return self.provider.batch_inputs(endpoint, data)

    def submit(self, req: Request) -> Request:
        """Admit a request (any thread).  Raises at once when it cannot be
        queued: ``ShutdownError``, ``CircuitOpenError``, ``QueueFullError``."""
        if self.closed:
            raise ShutdownError(f"{self.provider.name} backend is closed; create a new client", provider=self.provider.name)
        now = self.clock.now()
        if self.breaker.state(now) == STATE_OPEN:
            self.stats.record_rejected("circuit_open")
            raise self._circuit_open_error(now, req)
        queue = self.queue
        with queue.lock:
            try:
                queue.ensure_room(self.batches.pending)
                if req.inputs is None:
                    req.entry = queue.push(req, req.priority, now)
            except QueueFullError as exc:
                self.stats.record_rejected("queue_full")
                exc.provider, exc.request_id = self.provider.name, req.request_id
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

    def _circuit_open_error(self, now: float, req: Optional[Request] = None) -> CircuitOpenError:
        wait = self.breaker.retry_in(now)
        snap = self.breaker.snapshot(now)
        return CircuitOpenError(
            f"circuit is OPEN (opened {snap.get('times_opened', 0)} times so far): failing fast, "
            f"next probe in {wait:.1f}s; see client.failure_threshold and client.reset_timeout",
            provider=self.provider.name,
            request_id=req.request_id if req else None,
            retry_after=wait,
        )

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
                    self._fail_queued(now)
                break  # HALF_OPEN with its probes out: the rest wait for their verdict
            entry = queue.pop(now)
            if entry is None or entry.item.future.done():
                breaker.on_ignored(now, permit=permit)
                continue
            req: Request = entry.item
            req.lease = self.keys.lease(req, now, self.rng)
            if req.lease is None:  # no key may take it now: it keeps its place and waits
                breaker.on_ignored(now, permit=permit)
                with queue.lock:
                    queue.requeue(entry, now)
                self._wait_for_key(req, now)
                break
            self.in_flight += 1
            task = self.loop.create_task(self._run(req, permit))
            req.task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.deadlines.arm(now)

    # ------------------------------------------------------------ attempt

    def _wait_for_key(self, req: Request, now: float) -> None:
        """Wake the pump when some key can take ``req``; fail what is queued
        when no key ever will (every key disabled)."""
        ready = self.keys.ready_at(req, now)
        if ready is None:
            error = self.keys.all_disabled_error(self.provider.name, now)
            if error is not None:
                self._fail_queued(now, lambda r: error)
            return  # else keys are only busy: a finishing attempt runs the pump
        if self._key_timer is not None:
            self._key_timer.cancel()
        self._key_timer = self.loop.call_later(max(0.0, ready - now), self._on_key_ready)

    def _on_key_ready(self) -> None:
        self._key_timer = None
        self._pump()

    def _fail_queued(self, now: float, error_for=None) -> None:
        """Everything queued fails fast: the circuit is OPEN (or ``error_for(req)``)."""
        with self.queue.lock:
            entries = self.queue.drain()
        for entry in entries:
            req = entry.item
            if not req.future.done():
                error = error_for(req) if error_for is not None else self._circuit_open_error(now, req)
                error.__cause__ = req.last_error  # what failed before, when it was waiting to retry
                self.finish(req, None, error)

    async def _run(self, req: Request, permit: int) -> None:
        """One attempt, then: complete, or schedule the retry."""
        result: Any = None
        error: Optional[BaseException] = None
        req.running = True
        if req.future.done():  # cancelled before this task got to run
            self.breaker.on_ignored(self.clock.now(), permit=permit)
            lease, req.lease = req.lease, None
            self.keys.release(lease, self.clock.now(), CancelledRequestError("cancelled"), (0, 0))
            self.in_flight -= 1
            req.task = None
            req.running = False
            self._pump()
            return
        try:
            result = await self._attempt(req, permit)
        except asyncio.CancelledError:
            error = ShutdownError("backend closed during the attempt") if self.closed else CancelledRequestError(
                "request cancelled by the caller", request_id=req.request_id
            )
        except ApiError as exc:
            error = exc
        except Exception as exc:  # not a service outcome (a bug, a library surprise): handed over as it is, not retried
            self.breaker.on_ignored(self.clock.now(), permit=permit)  # a permit reported twice counts once
            error = exc
        finally:
            self.in_flight -= 1
            req.task = None
            req.running = False
            lease, req.lease = req.lease, None
            usage = self.provider.usage(result) if error is None and result is not None else (0, 0)
            if lease is not None:  # every attempt's key is released once, whatever happened
                self.keys.release(lease, self.clock.now(), error, usage)
        if error is None:
            if not req.stream:
                self.finish(req, result, None, usage)
        elif isinstance(error, (CancelledRequestError, ShutdownError)) or not isinstance(error, ApiError):
            self.finish(req, None, error)
        else:
            self._after_failure(req, error)
        if not self.closed:
            self._pump()

    async def _attempt(self, req: Request, permit: int) -> Any:
        clock = self.clock
        now = clock.now()
        if req.first_attempt_at is None:
            req.first_attempt_at = now
        if req.deadline is not None and now >= req.deadline:
            self.breaker.on_ignored(now, permit=permit)
            raise DeadlineExceededError(
                f"request deadline passed after {now - req.submitted_at:.2f}s (waited in queue); "
                "raise client.request_deadline or lower the load",
                provider=self.provider.name,
                request_id=req.request_id,
            )
        req.attempts += 1
        timeout = self.settings["timeout"] if req.options.timeout is None else req.options.timeout
        if req.deadline is not None:
            timeout = max(0.001, min(timeout, req.deadline - now))
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
        started = clock.now()
        if req.stream:
            return await self._attempt_stream(req, permit, http_request, api_key, started, timeout)
        try:
            response = await self._send(req, http_request, api_key)
            result = self.provider.parse_response(req.endpoint, response)
        except ApiError as error:
            error.attempt = error.attempt or req.attempts
            self._record_attempt(error, started, key_name, error.status, permit)
            raise
        except asyncio.CancelledError:
            self.breaker.on_ignored(clock.now(), permit=permit)
            raise
        self._record_attempt(None, started, key_name, response.status, permit)
        return result

    async def _send(self, req: Request, http_request: Any, api_key: Optional[str]) -> Any:
        """One HTTP exchange: the 2xx response, or its typed error (never recorded here)."""
        try:
            response = await self.transport.send(http_request)
        except (OSError, asyncio.TimeoutError) as exc:
            raise classify_exception(exc, provider=self.provider.name, request_id=req.request_id, attempt=req.attempts) from exc
        self.keys.hints(req.last_key, self.provider, response.headers, self.clock.now())
        if not response.ok:
            if isinstance(response, StreamResponse):  # pragma: no cover - transports read error bodies whole
                await response.aclose()
            error = self.provider.error_for(response, wall_now=self.clock.wall(), attempt=req.attempts)
            error.request_id = error.request_id or req.request_id
            _redact(error, api_key)
            raise error
        return response

    def _record_attempt(
        self, error: Optional[ApiError], started: float, key_name: Optional[str], status: Optional[int], permit: int
    ) -> None:
        now = self.clock.now()
        duration = now - started
        if error is None:
            self.breaker.on_success(now, duration, permit=permit)
        elif error.breaker_failure:
            self.breaker.on_failure(now, duration, permit=permit)
        else:
            self.breaker.on_ignored(now, permit=permit)
        self.stats.record_attempt(
            key_name=key_name,
            status=status,
            error_kind=error.kind if error is not None else None,
            latency=duration,
        )

    # ------------------------------------------------------------ streams

    async def _attempt_stream(
        self, req: Request, permit: int, http_request: Any, api_key: Optional[str], started: float, timeout: float
    ) -> None:
        """A streaming attempt.  Until its first chunk it is like any attempt:
        a failure, a malformed event or no chunk within ``timeout`` is
        recorded and raised, so the request is retried (on another key
        when one is free).  Once a chunk has arrived the caller gets the
        stream, and :meth:`_feed` carries it to its end."""
        watch = StallWatch(self.loop, asyncio.current_task(), timeout)
        response = None
        try:
            response = await self._send(req, http_request, api_key)
            events = _decode(self.provider, response)
            chunk, done = await self._next_chunk(events)
        except asyncio.CancelledError:
            if response is not None:
                await response.aclose()
            if not watch.timed_out():
                self.breaker.on_ignored(self.clock.now(), permit=permit)
                raise
            error: ApiError = RequestTimeoutError(
                f"no stream chunk within {timeout:g}s of sending (see client.timeout)",
                provider=self.provider.name,
                request_id=req.request_id,
                attempt=req.attempts,
            )
            self._record_attempt(error, started, req.last_key, None, permit)
            raise error from None
        except ApiError as error:
            watch.stop()
            if response is not None:
                await response.aclose()
            error.attempt = error.attempt or req.attempts
            self._record_attempt(error, started, req.last_key, error.status, permit)
            raise
        self._record_attempt(None, started, req.last_key, response.status, permit)  # started: a success for the breaker
        await self._feed(req, response, events, chunk, done, watch)

    async def _next_chunk(self, events: Any) -> tuple[Any, bool]:
        """The next chunk the provider hands over (skipping pings and the
        like), and whether the stream is complete after it."""
        parse = self.provider.parse_stream_event
        while True:
            try:
                event = await anext(events)
            except StopAsyncIteration:
                raise NetworkError("stream ended without its end marker", provider=self.provider.name) from None
            chunk, done = parse(event)
            if chunk is not None or done:
                return chunk, done

    async def _feed(self, req: Request, response: StreamResponse, events: Any, chunk: Any, done: bool, watch: "StallWatch") -> None:
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
        error: Optional[ApiError] = None
        try:
            while True:
                if chunk is not None:
                    item = progress.chunk(self.provider, chunk)
                    if channel.put(item):  # the caller has fallen behind: wait for it, not for the server
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
                closed = CancelledRequestError("stream closed by the caller", request_id=req.request_id)
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
            error = exc
        watch.stop()
        await response.aclose()
        if error is not None:
            error.request_id = error.request_id or req.request_id
            error.attempt = error.attempt or req.attempts
            error.chunks_received, error.partial_text = progress.count, progress.text()
            error.message = f"{error.message} (stream ended after {progress.count} chunks, {progress.chars} characters of text)"
        self._record_stream(req, progress, error)  # before the caller sees the end, so its get_stats() includes it
        channel.put(error if error is not None else END_OF_STREAM)

    def _record_stream(self, req: Request, progress: "StreamProgress", error: Optional[BaseException]) -> None:
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

    def _after_failure(self, req: Request, error: ApiError) -> None:
        now = self.clock.now()
        retry_options = self._retry_options_for(req)
        if isinstance(error, RateLimitError) and req.last_key is not None:
            req.avoid_key = req.last_key  # that key cools down; the retry prefers another
            if req.retries < retry_options.max_retries and self.keys.another_ready(req.last_key, req, now):
                req.retries += 1
                req.last_error = error
                self._requeue(req)  # another key is free now: no reason to wait
                return
        if isinstance(error, AuthenticationError) and req.last_key is not None and self.keys.another_usable(req.last_key, req, now):
            req.retries += 1  # that key is disabled now; the request moves on to one that may work
            req.last_error = error
            self._requeue(req)
            return
        decision = retry_policy.decide(error, req.retries, retry_options, self.rng, now, req.deadline)
        if not decision.retry or self.closed:
            if decision.reason == "deadline":
                error = retry_policy.deadline_error(error, decision, now, req.deadline)
                error.request_id = req.request_id
            self.finish(req, None, error)
            return
        req.retries += 1
        req.last_error = error
        log.info(
            "%s request %s: %s; retry %d/%d in %.3fs (%s)",
            self.provider.name,
            req.request_id,
            type(error).__name__,
            req.retries,
            retry_options.max_retries,
            decision.delay,
            decision.reason,
        )
        self._backing_off.add(req)
        req.timer = self.loop.call_later(decision.delay, self._requeue, req)

    def _requeue(self, req: Request) -> None:
        req.timer = None
        self._backing_off.discard(req)
        if req.future.done() or self.closed:
            return
        now = self.clock.now()
        with self.queue.lock:
            self.queue.requeue(req.entry, now)
            self.deadlines.watch(req.entry, req.deadline)
        self._pump()

    # ------------------------------------------------------------ batches

    def flush_batches(self) -> int:
        """(loop) Send every open batch now, without waiting for its timeout."""
        sent = self.batches.flush(self.clock.now())
        self._pump()
        return sent

    def enqueue_carrier(self, carrier: Request, admitted: int, now: float) -> None:
        """(loop) Queue a batch's carrier in place of its ``admitted`` members."""
        error = None
        with self.queue.lock:
            self.batches.pending -= admitted
            try:
                carrier.entry = self.queue.push(carrier, carrier.priority, now)
            except QueueFullError as exc:  # only when queue_size was lowered meanwhile
                error = exc
            else:
                self.deadlines.watch(carrier.entry, carrier.deadline)
        for req, _ in carrier.members:
            req.entry = carrier.entry
        if error is not None:
            self.finish(carrier, None, error)

    # ------------------------------------------------------------- finish

    def finish(self, req: Request, result: Any, error: Optional[BaseException], usage: Optional[tuple[int, int]] = None) -> None:
        if req.members is not None:
            self.batches.finish(req, result, error)
            return
        if req.future.done():  # futures complete only on this loop: no other can slip in between
            return
        self.record_request(req, result, error, self.clock.now(), usage=usage)  # before the caller wakes and reads the stats
        req.future._complete(result, error, req.attempts, self.key_name(req))

    def key_name(self, req: Request) -> Optional[str]:
        """The key a request went out on (its name; a fingerprint for the seed's key)."""
        return req.last_key

    def record_request(
        self,
        req: Request,
        result: Any,
        error: Optional[BaseException],
        now: float,
        attempts: Optional[int] = None,
        usage: Optional[tuple[int, int]] = None,
    ) -> None:
        if usage is None:
            usage = self.provider.usage(result) if error is None else (0, 0)
        tokens_in, tokens_out = usage
        first = req.first_attempt_at if req.first_attempt_at is not None else now
        self.stats.record_request(
            RequestRecord(
                success=error is None,
                latency=now - req.submitted_at,
                queue_wait=max(0.0, first - req.submitted_at),
                attempts=attempts if attempts is not None else req.attempts,
                model=req.model,
                error_kind=getattr(error, "kind", type(error).__name__) if error is not None else None,
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
        if req.task is not None and req.members is None:
            if req.running:  # abort the attempt; _run completes the future
                req.task.cancel()
                return
            # the task has not started: a cancel now would skip its cleanup;
            # completing the future makes it stand down when it starts
        if req.member is not None:
            self.batches.remove(req)
        elif req.timer is not None:
            req.timer.cancel()
            req.timer = None
            self._backing_off.discard(req)
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
        shutdown = ShutdownError(f"{self.provider.name} backend closed before the request was sent", provider=self.provider.name)
        with self.queue.lock:
            entries = self.queue.drain()
        self.deadlines.clear()
        if self._key_timer is not None:
            self._key_timer.cancel()
        pending = [entry.item for entry in entries] + self.batches.drain()
        for req in list(self._backing_off):
            req.timer.cancel()
            pending.append(req)
        self._backing_off.clear()
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
        elif not self._engine_loop.alive:
            self.closed = True
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.aclose(grace), self.loop))

    def close(self, grace: float = 5.0) -> None:
        if self.closed:
            return
        if in_engine_thread():
            raise RuntimeError("close() called from the engine's own loop; use 'await backend.aclose()'")
        if not self._engine_loop.alive:
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


def _redact(error: ApiError, api_key: Optional[str]) -> None:
    """Servers echo keys in error messages ("Incorrect API key provided:
    sk-..."); ours never carry them."""
    if not api_key:
        return
    marks = {api_key, api_key[:8], api_key[-6:]} if len(api_key) >= 12 else {api_key}
    for mark in marks:
        if mark and mark in error.message:
            error.message = error.message.replace(mark, "***")
    if error.body is not None and any(mark in str(error.body) for mark in marks if mark):
        error.body = None  # the provider's details stay readable unless they quote the key


def _decode(provider: Any, response: StreamResponse) -> Any:
    """The response's events, decoded by the provider's stream format."""
    decode = iter_sse if provider.stream_format == "sse" else iter_ndjson
    return decode(response.lines())


def _cancel_task(task: Optional[asyncio.Task]) -> None:
    if task is not None and not task.done():
        task.cancel()
