"""One logical request as the engine carries it from admission to completion."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import os
from typing import Any, cast

from ..resilience.batching import BatchMember
from ..resilience.keys import Lease
from ..resilience.priority_queue import QueueEntry
from .call_options import DEFAULT_OPTIONS, CallOptions
from .future import RequestFuture
from .lifecycle import TABLE, Event, IllegalTransition, Phase, Transition

__all__ = ["Request", "new_request_id", "request_of"]

_ids = itertools.count(1)
_prefix = f"req-{os.getpid():x}-"


def new_request_id() -> str:
    return f"{_prefix}{next(_ids)}"


class Request:
    """Mutable state of one request; touched only on the engine loop after
    admission (the caller's thread builds it and never touches it again).

    ``phase`` is its place in the lifecycle (:mod:`.lifecycle`); it moves only
    through :meth:`move`, which refuses a transition the table does not have.
    """

    __slots__ = (
        "endpoint",
        "data",
        "priority",
        "request_id",
        "api_key",
        "stream",
        "model",
        "circuit_wait",
        "cut_at",
        "options",
        "future",
        "submitted_at",
        "deadline",
        "first_attempt_at",
        "attempts",
        "retries",
        "last_error",
        "lease",
        "last_key",
        "avoid_key",
        "tokens",
        "entry",
        "task",
        "running",
        "timer",
        "inputs",
        "member",
        "members",
        "context",
        "phase",
    )

    # what the caller asked for
    endpoint: str
    data: dict[str, Any] | None
    priority: int
    request_id: str
    api_key: str | None
    stream: bool
    model: str | None
    circuit_wait: bool  # while the circuit is OPEN: wait for its probe (True) or fail fast
    options: CallOptions  # per-call timeout, max_retries, extra headers and query
    future: RequestFuture
    submitted_at: float
    deadline: float | None
    context: contextvars.Context | None  # the caller's context variables, for its attempts
    # where it is in its lifecycle
    phase: Phase
    first_attempt_at: float | None
    attempts: int
    retries: int
    last_error: BaseException | None  # the failure a retry is waiting out
    last_key: str | None  # the key of the last attempt (stats)
    avoid_key: str | None  # a key that refused it (429): another is preferred
    tokens: int | None  # estimated tokens, for keys with a tpm budget
    # what it holds in its current phase
    entry: QueueEntry | None  # while queued or between attempts
    lease: Lease | None  # the key lease of the attempt in flight
    task: asyncio.Task[None] | None  # while an attempt is in flight
    running: bool  # True once that task's coroutine has started
    cut_at: float | None  # when the deadline, not client.timeout, ends the attempt in flight
    timer: asyncio.TimerHandle | None  # while waiting out a backoff or a hold
    # the batch lane
    inputs: list[Any] | None  # embeddings inputs, when batchable
    member: BatchMember | None  # while in the batch assembler
    members: list[tuple[Request, int]] | None  # a batch carrier's callers and their input counts

    def __init__(
        self,
        endpoint: str,
        data: dict[str, Any] | None,
        *,
        priority: int,
        request_id: str | None,
        api_key: str | None,
        stream: bool,
        submitted_at: float,
        deadline: float | None,
        model: str | None = None,
        circuit_wait: bool = False,
        options: CallOptions = DEFAULT_OPTIONS,
    ) -> None:
        self.endpoint = endpoint
        self.data = data
        self.priority = priority
        self.request_id = request_id or new_request_id()
        self.api_key = api_key
        self.stream = stream
        self.model = model
        self.circuit_wait = circuit_wait
        self.options = options
        self.cut_at = None
        self.future = RequestFuture(self.request_id)
        self.submitted_at = submitted_at
        self.deadline = deadline
        self.phase = Phase.NEW
        self.first_attempt_at = None
        self.attempts = 0
        self.retries = 0
        self.last_error = None
        self.lease = None
        self.last_key = None
        self.avoid_key = None
        self.tokens = None
        self.entry = None
        self.task = None
        self.running = False
        self.timer = None
        self.inputs = None
        self.member = None
        self.members = None
        self.context = None

    def move(self, event: Event) -> Transition:
        """Take ``event``: the phase moves as the lifecycle table says, and the
        transition (its actions) is returned; an illegal event raises."""
        try:  # lifecycle.step, inlined: four times per request
            transition = TABLE[self.phase, event]
        except KeyError:
            raise IllegalTransition(self.phase, event) from None
        self.phase = transition.next
        return transition

    def __repr__(self) -> str:  # never the key, never the payload
        return (
            f"<Request {self.request_id} {self.endpoint} priority={self.priority} "
            f"attempts={self.attempts} phase={self.phase.name}>"
        )


def request_of(entry: QueueEntry) -> Request:
    """The request a queue entry carries (the engine's queue holds nothing else)."""
    return cast(Request, entry.item)
