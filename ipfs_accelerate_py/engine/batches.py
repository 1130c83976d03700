"""The batch lane: embeddings requests on their way into one call.

    admit (caller's thread, counted against queue_size)
      -> assemble (loop: the sans-IO BatchAssembler groups alike requests)
      -> launch (a full or timed-out batch becomes one *carrier* request in
         the priority queue, at its most urgent member's priority)
      -> the carrier is attempted and retried like any request
      -> finish (the response is split by ``index``; each member's future
         gets its own part, or the carrier's error)

A member counts against ``queue_size`` from admission until its carrier is
queued, so the bound holds whatever the traffic.  Only alike requests share
a batch: same endpoint, model, body fields but the inputs, API key, and
per-call options (timeout, max_retries, extra headers and query), which
the carrier then has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from ..resilience.batching import Batch, BatchAssembler, batch_key, estimate_tokens
from ..resilience.clock import Clock
from ..resilience.errors import ApiError, copied
from ..resilience.priority_queue import PriorityRequestQueue
from ..resilience.stats import StatsCollector
from .events import BatchSent, EventBus
from .keyring import key_fingerprint
from .lifecycle import Event
from .request import Request

__all__ = ["BatchLane", "LaneHost"]


class LaneHost(Protocol):
    """What the lane needs of its engine (the engine is one; so is a test's fake)."""

    @property
    def provider(self) -> Any: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def queue(self) -> PriorityRequestQueue: ...
    @property
    def stats(self) -> StatsCollector: ...
    @property
    def events(self) -> EventBus: ...

    def call_later(
        self, delay: float, fn: Callable[..., object], *args: Any
    ) -> asyncio.TimerHandle: ...
    def wake(self) -> None: ...
    def parsed(self, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...
    def annotate(self, error: ApiError, req: Request) -> ApiError: ...
    def record_request(
        self,
        req: Request,
        result: Any,
        error: BaseException | None,
        now: float,
        attempts: int | None = None,
        usage: tuple[int, int] | None = None,
    ) -> None: ...
    def enqueue_carrier(self, carrier: Request, admitted: int, now: float) -> None: ...


def _model_of(key: Hashable) -> str | None:
    """The model in a batch key (see :func:`~..resilience.batching.batch_key`)."""
    assert isinstance(key, tuple)
    model: str | None = key[1]
    return model


def _due_by(req: Request) -> float | None:
    """The latest a batch member waits for company: half the time from its
    submission to its deadline (None without a deadline), whatever
    ``batch_timeout`` says, leaving the other half to the call itself."""
    if req.deadline is None:
        return None
    return req.submitted_at + (req.deadline - req.submitted_at) / 2


class BatchLane:
    def __init__(self, engine: LaneHost, max_batch_size: int, batch_timeout: float) -> None:
        self.engine = engine
        self.assembler = BatchAssembler(
            max_batch_size, batch_timeout, lambda key: engine.provider.batch_limits(_model_of(key))
        )
        # guarded by engine.queue.lock: shared with callers' threads
        self.pending = 0  # admitted members not yet in a queued carrier
        self._incoming: list[Request] = []
        # loop only
        self._timer: asyncio.TimerHandle | None = None
        self._seq = 0

    # caller's thread, under engine.queue.lock
    def admit(self, req: Request) -> None:
        self.pending += 1
        self._incoming.append(req)

    # ------------------------------------------------------------ loop

    def assemble(self, now: float) -> None:
        """Take what callers admitted into the assembler; launch full batches."""
        with self.engine.queue.lock:
            incoming, self._incoming = self._incoming, []
        if not incoming:
            return
        for req in incoming:
            if req.future.done():  # cancelled on its way in
                self._release(1)
                continue
            template = self.engine.provider.batch_template(req.endpoint, req.data)
            # a caller's own key stays apart; so do per-call timeout, max_retries,
            # headers and query: a batch has one of each
            model: Any = req.model  # None: a model-less endpoint's requests batch as one
            key = batch_key(req.endpoint, model, template, key_fingerprint(req.api_key)) + (
                req.options,
            )
            req.member, ready = self.assembler.add(key, req, req.inputs or [], now, _due_by(req))
            for batch in ready:
                self._launch(batch, now)
        self._arm_timer(now)

    def flush(self, now: float) -> int:
        """Launch every open batch now; how many there were."""
        self.assemble(now)
        batches = self.assembler.drain()
        for batch in batches:
            self._launch(batch, now)
        self._arm_timer(now)
        return len(batches)

    def remove(self, req: Request) -> None:
        """A cancelled member leaves its open batch."""
        if req.member is not None and self.assembler.remove(req.member):
            self._release(1)
        req.member = None
        self._arm_timer(self.engine.clock.now())

    def drain(self) -> list[Request]:
        """(shutdown) Every member not yet launched."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with self.engine.queue.lock:
            waiting, self._incoming = self._incoming, []
            self.pending = 0
        return waiting + [m.item for batch in self.assembler.drain() for m in batch.members]

    def finish(self, carrier: Request, result: Any, error: BaseException | None) -> None:
        """Each member gets its own part of the response, or the error."""
        engine = self.engine
        members = carrier.members or []
        parts: list[Any] = [None] * len(members)
        if error is None:
            try:
                weights = [sum(estimate_tokens(x) for x in req.inputs or ()) for req, _ in members]
                parts = engine.parsed(
                    engine.provider.split_batch_result, result, [n for _, n in members], weights
                )
            except ApiError as exc:
                error = exc
        now = engine.clock.now()
        inputs = sum(n for _, n in members)
        engine.stats.record_batch(inputs, len(members))
        if engine.events.subscribers[BatchSent]:
            engine.events.publish(
                BatchSent(
                    engine.provider.name, carrier.model, inputs, len(members), error is None, now
                )
            )
        for (req, _), part in zip(members, parts, strict=False):
            req.first_attempt_at = carrier.first_attempt_at
            req.last_key = carrier.last_key
            req.attempts = carrier.attempts
            # counted before the caller wakes, so its get_stats() includes it
            if not req.future.done():
                req.move(Event.BATCH_DONE)
                own = (
                    self._member_error(error, carrier, req)
                    if isinstance(error, ApiError)
                    else error
                )
                engine.record_request(req, part, own, now, attempts=carrier.attempts)
                req.future._complete(
                    part if error is None else None, own, carrier.attempts, carrier.last_key
                )

    def _member_error(self, error: ApiError, carrier: Request, req: Request) -> ApiError:
        """The batch's error as the member's own: its request id, never the batch's."""
        own = copied(error)
        if own.request_id == carrier.request_id:
            own.request_id = None
        own.client_request_id = None
        return self.engine.annotate(own, req)

    # ------------------------------------------------------------ inside

    def _release(self, count: int) -> None:
        with self.engine.queue.lock:
            self.pending -= count

    def _arm_timer(self, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due_at = self.assembler.next_due_at()
        if due_at is not None:
            self._timer = self.engine.call_later(max(0.0, due_at - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.engine.clock.now()
        for batch in self.assembler.due(now):
            self._launch(batch, now)
        self._arm_timer(now)
        self.engine.wake()

    def _launch(self, batch: Batch, now: float) -> None:
        """An assembled batch becomes one carrier request in the queue."""
        live = []
        for member in batch.members:
            req: Request = member.item
            req.member = None
            if not req.future.done():
                req.move(Event.LAUNCHED)
                live.append(member)
        if not live:
            self._release(len(batch.members))
            return
        first = live[0].item
        template = self.engine.provider.batch_template(first.endpoint, first.data)
        deadlines = [m.item.deadline for m in live if m.item.deadline is not None]
        self._seq += 1
        carrier = Request(
            self.engine.provider.batch_endpoint(first.endpoint, template),
            self.engine.provider.batch_payload(template, [x for m in live for x in m.inputs]),
            priority=min(m.item.priority for m in live),
            request_id=f"batch-{self._seq}",
            api_key=first.api_key,
            stream=False,
            submitted_at=min(m.item.submitted_at for m in live),
            deadline=min(deadlines) if deadlines else None,
            model=first.model,
            circuit_wait=all(m.item.circuit_wait for m in live),
            options=first.options,
        )
        carrier.members = [(m.item, m.n_inputs) for m in live]
        self.engine.enqueue_carrier(carrier, len(batch.members), now)
