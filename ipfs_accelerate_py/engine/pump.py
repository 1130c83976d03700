"""The pump: what starts when, and where a failed attempt goes next.

The pump is not a task that polls: it runs when something changes (a
request arrives, a slot frees, a backoff ends, a key or the circuit's probe
comes due: one timer each).  Each request it takes moves through the
lifecycle table (:mod:`.lifecycle`): ``PERMIT_GRANTED``, then
``KEY_LEASED`` (an attempt starts, :mod:`.attempt`) or one of the
``NO_KEY_*`` events, whose actions it carries out here.  After a failed
attempt, :func:`.lifecycle.after_failure` gives the verdict and
:meth:`Dispatcher.after_failure` executes it: requeue now, a backoff timer,
or completion.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
from collections.abc import Callable

from ..resilience import retry as retry_policy
from ..resilience.breaker import STATE_CLOSED, STATE_OPEN
from ..resilience.errors import (
    ApiError,
    AuthenticationError,
    CircuitOpenError,
    DeadlineExceededError,
    RateLimitDeadlineError,
    RateLimitError,
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
from ..resilience.priority_queue import QueueEntry
from .attempt import AttemptHold
from .events import RetryScheduled
from .lifecycle import Action, Event, Verdict, after_failure, no_key_event, step
from .loop import start_task
from .request import Request, request_of
from .streaming import Streams

__all__ = ["Dispatcher"]

log = logging.getLogger("ipfs_accelerate_py.engine")

_MIN_HOLD = 0.001  # seconds: the shortest hold, so that a hold can never turn into a spin
_HELD_BY = {
    REASON_COOLING: "cooling after HTTP 429 for this model",
    REASON_KEY_COOLING: "cooling after HTTP 429, key-wide",
    REASON_RPM: "its rpm limit",
    REASON_TPM: "its tpm limit",
}


class Dispatcher(Streams):
    """The pump, waiting for keys and the circuit, and retries."""

    _swept_opening: float | None  # (loop) the opening whose queue was last sorted out
    _circuit_timer: asyncio.TimerHandle | None  # (loop) wakes the pump at the next probe
    _key_timer: asyncio.TimerHandle | None  # (loop) wakes the pump when a key may go

    def _pump(self) -> None:
        queue = self.queue
        with queue.lock:
            self._wake_pending = False
        now = self.clock.now()
        self.batches.assemble(now)
        limit = self.settings.values["max_concurrent_requests"]
        breaker = self.breaker
        keys = self.keys
        loop = self.loop
        while self.in_flight < limit and len(queue):
            permit = breaker.acquire(now)
            if permit is None:
                if breaker.state(now) == STATE_OPEN:
                    self._hold_for_circuit(now)
                break  # HALF_OPEN with its probes out: the rest wait for their verdict
            entry = queue.pop(now)
            req = None if entry is None else request_of(entry)
            if req is None or entry is None or req.future._done:  # done(), without a call
                breaker.on_ignored(now, permit=permit)
                continue
            if self.budgeted and not req.attempts:  # one never sent: not if the budget is spent
                over = self.budget_error()
                if over is not None:
                    breaker.on_ignored(now, permit=permit)
                    self.finish(req, None, over, Event.BUDGET)
                    continue
            req.move(Event.PERMIT_GRANTED)
            lease = keys.lease(req, now, self.rng)
            if lease is None:  # no key may take it now
                breaker.on_ignored(now, permit=permit)
                if self._no_key(req, entry, now):
                    continue
                break
            req.move(Event.KEY_LEASED)
            req.lease = lease
            # from here on the hold owns the permit, the lease and the slot
            hold = AttemptHold(self, permit, lease)
            self.in_flight += 1
            # its caller's context variables (a batch runs in no caller's: a fresh context)
            context = req.context if req.context is not None else contextvars.Context()
            task = start_task(loop, self._run(req, hold), context)
            req.task = task
            self._tasks.add(task)
            # one done callback (one loop callback per attempt, not two): it leaves
            # _tasks, and a task cancelled before it ran still gives all back
            task.add_done_callback(hold.on_task_done)
        self.deadlines.arm(now)

    # ------------------------------------------------------------ no key

    def _no_key(self, req: Request, entry: QueueEntry, now: float) -> bool:
        """(permit given back) Carry out the ``NO_KEY_*`` event for ``req``;
        True when the pump may go on with the next request."""
        keys = self.keys
        ready = keys.readiness(req, now)
        if ready is None:
            event = Event.NO_KEY_WAIT
        else:
            others = not ready.busy and keys.free_for_others(req, now)
            event = no_key_event(ready.at, ready.busy, req.deadline, others)
        actions = step(req.phase, event).actions
        if Action.COMPLETE in actions:  # waiting cannot help: say why now (finish moves it)
            assert ready is not None
            self.finish(req, None, self._no_key_error(req, ready, now), event)
            return True
        req.move(event)
        if Action.HOLD in actions:  # only its model is cooling: the others go on
            self._hold(req, max(ready.at - now if ready else 0.0, _MIN_HOLD))
            return True
        with self.queue.lock:  # it keeps its place and waits
            self.queue.requeue(entry, now)
        self._wait_for_key(now, ready)
        return False

    def _wait_for_key(self, now: float, ready: Readiness | None) -> None:
        """Wake the pump when some key can take what waits; fail what is
        queued when no key ever will (every key disabled)."""
        if ready is None:
            error = self.keys.all_disabled_error(self.provider.name, now)
            if error is not None:
                self._fail_queued(now, Event.NO_KEY_EVER, lambda r: error)
            return
        if ready.busy and ready.at <= now:
            return  # a key frees when its attempt finishes, which runs the pump
        if self._key_timer is not None:
            self._key_timer.cancel()
        self._key_timer = self.call_later(max(0.0, ready.at - now), self._on_key_ready)

    def _hold(self, req: Request, delay: float) -> None:
        """Take ``req`` out of the queue for ``delay`` seconds, then back at its
        old place; meanwhile it still counts against ``queue_size``."""
        with self.queue.lock:
            self._held_count += 1
        self._held.add(req)
        self._backing_off.add(req)
        req.timer = self.call_later(delay, self._on_timer, req)

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
        assert req.deadline is not None
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
            held = _HELD_BY.get(ready.reason or "", ready.reason or "")
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

    def _fail_queued(
        self,
        now: float,
        event: Event,
        error_for: Callable[[Request], ApiError] | None = None,
        keep: Callable[[Request], bool] | None = None,
    ) -> None:
        """What is queued fails fast by ``event``: the circuit is OPEN (or
        ``error_for(req)``); what ``keep(req)`` approves goes back to its place instead."""
        with self.queue.lock:
            entries = self.queue.drain()
            for entry in entries:
                if keep is not None and keep(request_of(entry)):
                    self.queue.requeue(entry, now)
        for entry in entries:
            req = request_of(entry)
            if not req.future.done() and not entry.alive:
                error = (
                    copied(error_for(req))
                    if error_for is not None
                    else self.circuit_open_error(now, req)
                )
                if error.__cause__ is None:
                    # what failed before, when it was waiting to retry
                    error.__cause__ = req.last_error
                self.finish(req, None, error, event)

    # ------------------------------------------------------------ circuit

    def _hold_for_circuit(self, now: float) -> None:
        """(loop) The circuit is OPEN.  Once an opening, what may not wait
        fails, and so does what would wait past its deadline; the rest stay
        queued in their order.  One timer wakes the pump at the probe: no
        polling."""
        snap = self.breaker.snapshot(now)
        probe_at = snap["opened_at"] + snap["reset_timeout"]
        # a request entering while OPEN is judged as it enters
        if self._swept_opening != snap["opened_at"]:
            self._swept_opening = snap["opened_at"]
            self._fail_queued(
                now,
                Event.CIRCUIT_OPEN,
                keep=lambda req: (
                    req.circuit_wait and (req.deadline is None or probe_at <= req.deadline)
                ),
            )
        if self._circuit_timer is None:
            self._circuit_timer = self.call_later(max(0.0, probe_at - now), self._on_probe_time)

    def queued_deadline_error(self, req: Request, now: float) -> ApiError:
        """(loop) The error of a request whose deadline passed in the queue,
        saying what held it: the circuit, a rate limit, or the attempts in flight."""
        assert req.deadline is not None
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

    def expire_queued(self, expired: list[object], now: float) -> None:
        """(loop) Queued requests whose deadline passed (the deadline watch took them out)."""
        for item in expired:
            assert isinstance(item, Request)
            if not item.future.done():
                self.finish(item, None, self.queued_deadline_error(item, now), Event.DEADLINE)
        if expired:
            self.wake()

    def _rearm_circuit(self) -> None:
        if self._circuit_timer is not None:
            self._circuit_timer.cancel()
            self._circuit_timer = None
        self._pump()

    def _on_probe_time(self) -> None:
        self._circuit_timer = None
        self._pump()

    # ------------------------------------------------------------ retries

    def _retry_options_for(self, req: Request) -> retry_policy.RetryOptions:
        """The client's retry options, with the request's own ``max_retries`` when it has one."""
        if req.options.max_retries is None:
            return self.retry_options
        return dataclasses.replace(self.retry_options, max_retries=req.options.max_retries)

    def _cut_by_deadline(self, req: Request, error: ApiError) -> DeadlineExceededError:
        """The error of an attempt the request's deadline cut short."""
        assert req.deadline is not None
        cut = DeadlineExceededError(
            f"request deadline of {req.deadline - req.submitted_at:.2f}s passed during attempt {req.attempts} "
            "(no answer by then); raise client.request_deadline, or lower client.timeout so that retries fit in it",
            provider=self.provider.name,
            request_id=error.request_id,
            attempt=req.attempts,
        )
        cut.__cause__ = error
        return cut

    def after_failure(self, req: Request, error: ApiError) -> None:
        """(loop, the attempt's hold given back) Execute the lifecycle's verdict on ``error``."""
        now = self.clock.now()
        options = self._retry_options_for(req)
        last_key = req.last_key
        another = (
            isinstance(error, AuthenticationError)
            and last_key is not None
            and self.keys.another_usable(last_key, req, now)
        )
        if isinstance(error, RateLimitError) and last_key is not None:
            # its (key, model) cools now; back in the queue, it goes on the first key
            # free for its model, waits for one within its deadline, or fails at once
            req.avoid_key = last_key
        verdict = after_failure(
            error,
            retries=req.retries,
            options=options,
            rng=self.rng,
            now=now,
            deadline=req.deadline,
            cut_at=req.cut_at,
            last_key=last_key,
            closed=self.closed,
            another_key_usable=another,
        )
        event = verdict.event
        if event is Event.DEADLINE:  # the deadline, not the server, ended it
            self.finish(req, None, self._cut_by_deadline(req, error), event)
            return
        if event is Event.FAILED:
            decision = verdict.decision
            if decision is not None and decision.reason == retry_policy.REASON_DEADLINE:
                assert req.deadline is not None
                error = retry_policy.deadline_error(error, decision, now, req.deadline)
                error.request_id = req.request_id
            self.finish(req, None, error, event)
            return
        req.retries += 1
        req.last_error = error
        if log.isEnabledFor(logging.DEBUG):
            self._log_retry(req, error, verdict, options.max_retries)
        if self.events.subscribers[RetryScheduled]:
            self.events.publish(
                RetryScheduled(
                    req.request_id,
                    self.provider.name,
                    req.model,
                    req.attempts,
                    verdict.reason,
                    verdict.delay if event is Event.RETRY_LATER else 0.0,
                    error.kind,
                    now,
                )
            )
        actions = req.move(event).actions
        if Action.SCHEDULE_BACKOFF in actions:
            self._backing_off.add(req)
            req.timer = self.call_later(verdict.delay, self._on_timer, req)
        else:
            self._enter_queue(req)

    def _log_retry(self, req: Request, error: ApiError, verdict: Verdict, max_retries: int) -> None:
        if verdict.reason == "rate_limited":
            log.debug(
                "%s request %s: HTTP 429 on key %s; retry %d/%d",
                self.provider.name,
                req.request_id,
                req.last_key,
                req.retries,
                max_retries,
            )
        elif verdict.event is Event.RETRY_LATER:
            log.debug(
                "%s request %s: %s; retry %d/%d in %.3fs (%s)",
                self.provider.name,
                req.request_id,
                type(error).__name__,
                req.retries,
                max_retries,
                verdict.delay,
                verdict.reason,
            )

    def _on_timer(self, req: Request) -> None:
        """(loop) A backoff or a hold is over: back into the queue."""
        self._off_timer(req)
        if req.future.done() or self.closed:
            return
        now = self.clock.now()
        if self.must_fail_fast(req, now):
            self.finish(req, None, self.circuit_open_error(now, req), Event.CIRCUIT_OPEN)
            return
        req.move(Event.TIMER)
        self._enter_queue(req)

    def _enter_queue(self, req: Request) -> None:
        """(loop) ``req`` (QUEUED) takes its old place in the queue, or fails for an OPEN circuit."""
        now = self.clock.now()
        if self.must_fail_fast(req, now):
            self.finish(req, None, self.circuit_open_error(now, req), Event.CIRCUIT_OPEN)
            return
        assert req.entry is not None
        with self.queue.lock:
            self.queue.requeue(req.entry, now)
            self.deadlines.watch(req.entry, req.deadline)
        self._pump()
