"""The engine: drives each request through the policies and the transport.

Admission runs in the caller's thread (so a full queue or an open circuit
fails at once, without a trip to the loop); everything after runs on the
process's engine loop:

    submit -> [batch assembler] -> priority queue -> pump (max_concurrent_requests)
           -> attempt (breaker permit, key lease, transport) -> success | verdict
           -> backoff timer -> back into the queue at its old place | complete

Each request moves through the lifecycle table (:mod:`.lifecycle`); this
driver only carries out its actions, cut by job: :mod:`.pump` (dispatch,
keys, circuit, retries), :mod:`.attempt` (one attempt and what it holds),
:mod:`.streaming` (a stream), and this module (admission, completion,
cancel, close, settings).  No lock is held across I/O or a wait;
``queue.lock`` guards the queue and the few counters shared with callers'
threads.  Every future completes exactly once (``RequestFuture`` refuses a
second outcome; the table refuses a second ending).  What happens is
published to :attr:`Engine.events` (:mod:`.events`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from typing import Any

from ..resilience import retry as retry_policy
from ..resilience.breaker import STATE_OPEN, BreakerOptions, CircuitBreaker
from ..resilience.clock import SYSTEM_CLOCK, Clock
from ..resilience.errors import (
    ApiError,
    CancelledRequestError,
    QueueFullError,
    ShutdownError,
)
from ..resilience.priority_queue import PriorityRequestQueue
from ..resilience.stats import StatsCollector
from ..transport.base import Transport
from . import forking
from .batches import BatchLane
from .deadlines import DeadlineWatch
from .events import BreakerTransition, EventBus, RequestQueued
from .keyring import KeyRing, key_fingerprint
from .lifecycle import Event, Phase
from .loop import engine_loop, in_engine_thread
from .pump import Dispatcher
from .request import Request, request_of
from .settings import Settings

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
    "max_retry_after": "max_retry_after",
}


class Engine(Dispatcher):
    """One backend's queue, dispatcher, batch lane, breaker, stats and events."""

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
        self._engine_loop = engine_loop()

        self.events = EventBus()
        self.queue = PriorityRequestQueue(settings["queue_size"], settings["queue_aging_interval"])
        self.breaker = CircuitBreaker(self._breaker_options())
        self.breaker.add_listener(self._on_breaker_transition)
        self.keys = KeyRing(settings["key_strategy"], self._breaker_options(), clock.now())
        # a 0-remaining hint without its reset
        self.keys.pool.default_cooldown = settings["initial_retry_delay"]
        self.keys.pool.max_cooldown = settings["max_retry_after"]  # no server rests a key longer
        self.keys.set_default(api_key, clock.now())
        self.retry_options = self._retry_options()
        self.stats = StatsCollector()
        # the statistics and the log hear the rare events as subscribers
        self.events.subscribe(self._stats_hears, BreakerTransition)
        self.events.subscribe(_log_breaker, BreakerTransition)
        settings.add_listener(self._on_setting)

        self.in_flight = 0
        self.closed = False
        self.last_failure = None
        self.spent_cost = 0.0
        self.spent_tokens = 0
        self.budgeted = self._has_budget()
        self.supported_batch_models = frozenset()
        self._start_loop_state()
        forking.register(self)

    def _start_loop_state(self) -> None:
        """The loop-side state, fresh (at construction, and in a forked child)."""
        self._held_count = 0
        self._wake_pending = False
        self._swept_opening = None
        self._circuit_timer = self._key_timer = None
        self._backing_off = set()
        self._held = set()
        self._tasks = set()
        self.deadlines = DeadlineWatch(self.queue, self.clock, self.call_later, self.expire_queued)
        self.batches = BatchLane(
            self, self.settings["max_batch_size"], self.settings["batch_timeout"]
        )

    def _loop_alive(self) -> bool:
        return self._engine_loop is not None and self._engine_loop.alive

    def restart_after_fork(self) -> None:
        """(in a forked child, before anything else runs) Forget the parent's
        loop, work and held locks; see :mod:`.forking`."""
        for policy in (self.queue, self.breaker, self.keys.pool, self.stats):
            forking.reinit_locks(policy)
        self.events.after_fork()
        with self.queue.lock:
            self.queue.drain()
        self._engine_loop = None
        self.in_flight = 0
        self._start_loop_state()
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

    def _has_budget(self) -> bool:
        """Whether a max_cost or max_tokens_total is set (admission checks it then)."""
        return (
            self.settings["max_cost"] is not None or self.settings["max_tokens_total"] is not None
        )

    def _on_setting(self, name: str, value: Any) -> None:
        if name in _BREAKER_SETTINGS:
            # each key's breaker too
            self.breaker.options = self.keys.pool.breaker_options = self._breaker_options()
            if not self.closed:
                self.call_soon(self._rearm_circuit)  # a new reset_timeout moves the next probe
        elif name in _RETRY_SETTINGS:
            self.retry_options = self._retry_options()
            self.keys.pool.default_cooldown = self.settings["initial_retry_delay"]
            self.keys.pool.max_cooldown = self.settings["max_retry_after"]
        elif name in ("max_cost", "max_tokens_total"):
            self.budgeted = self._has_budget()
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
        last = self.last_failure
        cause = f"{type(last).__name__}: {last.message}" if new == STATE_OPEN and last else None
        self.events.publish(BreakerTransition(self.provider.name, old, new, cause, now))

    def _stats_hears(self, event: BreakerTransition) -> None:
        self.stats.record_breaker_transition(event.old, event.new, self.clock.wall())

    # ---------------------------------------------------------- admission

    def batch_inputs(self, endpoint: str, data: Any) -> list[Any] | None:
        """The inputs of a request that goes through the batch lane, else None."""
        if not self.settings["batching_enabled"] or not isinstance(data, dict):
            return None
        if (
            not self.provider.spec.batch_any_model
            and self.provider.request_model(endpoint, data) not in self.supported_batch_models
        ):
            return None
        inputs: list[Any] | None = self.provider.batch_inputs(endpoint, data)
        return inputs

    def submit(self, req: Request) -> Request:
        """Admit a request (any thread).  Raises at once when it cannot be
        queued: ``ShutdownError``, ``CircuitOpenError``, ``QueueFullError``."""
        if self.closed:
            raise ShutdownError(
                f"{self.provider.name} backend is closed; create a new client",
                provider=self.provider.name,
            )
        now = self.clock.now()
        if self.must_fail_fast(req, now):
            req.move(Event.REJECTED)
            self.stats.record_rejected("circuit_open")
            raise self.circuit_open_error(now, req)
        if self.budgeted:
            over = self.budget_error()
            if over is not None:
                req.move(Event.REJECTED)
                self.stats.record_rejected(over.kind)
                raise self.annotate(over, req)
        req.context = contextvars.copy_context()  # its attempts see the caller's context variables
        queue = self.queue
        entry = None
        with queue.lock:
            try:
                queue.ensure_room(self.batches.pending + self._held_count)
                if req.inputs is None:
                    entry = req.entry = queue.push(req, req.priority, now)
            except QueueFullError as exc:
                req.move(Event.REJECTED)
                self.stats.record_rejected("queue_full")
                self.annotate(exc, req)
                raise
            if entry is None:  # batchable: the loop takes it to the assembler
                req.move(Event.BATCHED)
                self.batches.admit(req)
            else:
                req.move(Event.ADMITTED)
                if req.deadline is not None:
                    self.deadlines.watch(entry, req.deadline)
            req.future._canceller = lambda: self.call_soon(self._cancel, req)
            wake = not self._wake_pending  # this caller wakes the loop, unless one already did
            self._wake_pending = True
        if self.events.subscribers[RequestQueued]:
            self.events.publish(
                RequestQueued(
                    req.request_id,
                    self.provider.name,
                    req.endpoint,
                    req.model,
                    req.priority,
                    now,
                )
            )
        if wake:  # outside the lock: waking the loop writes to its self-pipe
            self.call_soon(self._pump)
        return req

    # ------------------------------------------------------------ batches

    def flush_batches(self) -> int:
        """(loop) Send every open batch now, without waiting for its timeout."""
        sent = self.batches.flush(self.clock.now())
        self._pump()
        return sent

    def enqueue_carrier(self, carrier: Request, admitted: int, now: float) -> None:
        """(loop) Queue a batch's carrier in place of its ``admitted`` members."""
        error: ApiError | None = (
            self.circuit_open_error(now) if self.must_fail_fast(carrier, now) else None
        )
        with self.queue.lock:
            self.batches.pending -= admitted
            try:
                if error is None:
                    entry = carrier.entry = self.queue.push(carrier, carrier.priority, now)
                    carrier.move(Event.ADMITTED)
                    self.deadlines.watch(entry, carrier.deadline)
            except QueueFullError as exc:  # only when queue_size was lowered meanwhile
                error = exc
        for req, _ in carrier.members or ():
            req.entry = carrier.entry
        if error is not None:
            self.finish(carrier, None, error, Event.REJECTED)

    # ------------------------------------------------------------- finish

    def finish(
        self,
        req: Request,
        result: Any,
        error: BaseException | None,
        event: Event,
        usage: tuple[int, int] | None = None,
    ) -> None:
        """(loop) Complete ``req`` by ``event`` (a batch carrier: each of its members)."""
        if req.members is not None:
            if req.phase is not Phase.DONE:
                req.move(event)
                self.batches.finish(req, result, error)
            return
        if req.future._done:  # futures complete only on this loop: no other can slip in between
            return
        req.move(event)
        if isinstance(error, ApiError):
            error = self.annotate(error, req)
        # before the caller wakes and reads the stats
        self.record_request(req, result, error, self.clock.now(), usage=usage)
        req.future._complete(result, error, req.attempts, req.last_key)

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
        self.finish(req, None, error, Event.CANCEL)

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
        pending = [request_of(entry) for entry in entries] + self.batches.drain()
        for req in list(self._backing_off):
            if req.timer is not None:
                req.timer.cancel()
            self._off_timer(req)
            pending.append(req)
        for req in pending:
            self.finish(req, None, shutdown, Event.SHUTDOWN)
        tasks = list(self._tasks)
        if tasks:
            _, still = await asyncio.wait(tasks, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        await self.transport.aclose()
        self.stats.settle()  # a closed client keeps its figures, not their buffers

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

    def snapshot(self) -> dict[str, Any]:
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


def _log_breaker(event: BreakerTransition) -> None:
    """The engine's log of its circuit, as a subscriber."""
    cause = f" (last failure: {event.cause})" if event.cause else ""
    log.warning("%s circuit %s -> %s%s", event.provider, event.old, event.new, cause)
