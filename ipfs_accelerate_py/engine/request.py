"""One logical request as the engine carries it from admission to completion."""

from __future__ import annotations

import contextvars
import itertools
import os
from typing import Any

from .call_options import DEFAULT_OPTIONS, CallOptions
from .future import RequestFuture

__all__ = ["Request", "new_request_id"]

_ids = itertools.count(1)
_prefix = f"req-{os.getpid():x}-"


def new_request_id() -> str:
    return f"{_prefix}{next(_ids)}"


class Request:
    """Mutable state of one request; touched only on the engine loop after
    admission (the caller's thread builds it and never touches it again)."""

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
    )

    def __init__(
        self,
        endpoint: str,
        data: dict | None,
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
        self.circuit_wait = (
            circuit_wait  # while the circuit is OPEN: wait for its probe (True) or fail fast
        )
        self.options = options  # per-call timeout, max_retries, extra headers and query
        self.cut_at: float | None = (
            None  # when the deadline, not client.timeout, ends the attempt in flight
        )
        self.future = RequestFuture(self.request_id)
        self.submitted_at = submitted_at
        self.deadline = deadline
        self.first_attempt_at: float | None = None
        self.attempts = 0
        self.retries = 0
        self.last_error: BaseException | None = None  # the failure a retry is waiting out
        self.lease: Any = None  # the key lease of the attempt in flight
        self.last_key: str | None = None  # the key of the last attempt (stats)
        self.avoid_key: str | None = None  # a key that refused it (429): another is preferred
        self.tokens: int | None = None  # estimated tokens, for keys with a tpm budget
        self.entry: Any = None  # QueueEntry while queued or between attempts
        self.task: Any = None  # asyncio.Task while an attempt is in flight
        self.running = False  # True once that task's coroutine has started
        self.timer: Any = None  # TimerHandle while waiting out a backoff
        self.inputs: list | None = None  # embeddings inputs, when batchable
        self.member: Any = None  # BatchMember while in the batch assembler
        self.members: list[tuple[Request, int]] | None = (
            None  # a batch carrier's callers and their input counts
        )
        self.context: contextvars.Context | None = (
            None  # the caller's context variables, for its attempts
        )

    def __repr__(self) -> str:  # never the key, never the payload
        return f"<Request {self.request_id} {self.endpoint} priority={self.priority} attempts={self.attempts}>"
