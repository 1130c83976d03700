"""The simulator's request log: one JSON line per finished API request, in a file.

Off unless asked for (``Simulator.log_requests(path)``).  Counters say how
many; the log says which: a soak test tags each request with a header of its
own (``tag_header``, default ``x-request-tag``) and checks, request by
request, what the server did to it against what the client reported.  Each
line is written when the request is over (answered, dropped, or its client
gone)::

    {"n": 17, "path": "/v1/chat/completions", "tag": "42", "status": 200,
     "faults": ["stream_cut"], "disconnected": false, "stream_finished": false}

``n`` counts lines from 1; ``tag`` is the header's value (``null`` without
it); ``status`` is ``null`` when no answer was started (a dropped connection,
a client gone first); ``faults`` are the kinds injected into this request (the
``faults`` counter's names, in order).  Lines go to a file, not memory, so a
run of millions of requests costs the server no memory; the file is flushed
when the log is closed (``Simulator.log_requests(None)``, or ``stop()``).
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

__all__ = ["DEFAULT_TAG_HEADER", "LoggedRequest", "RequestLog", "current_faults", "read_log"]

DEFAULT_TAG_HEADER = "x-request-tag"

current_faults: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "simulator_request_faults", default=None
)
"""The fault list of the request being handled in this context (set only while a log is on)."""


class LoggedRequest(Protocol):
    """What a log line is made of (the counters' ticket)."""

    path: str
    tag: str | None
    status: int | None
    faults: list[str] | None
    disconnected: bool
    stream_finished: bool


class RequestLog:
    """Appends one JSON line per finished request to ``path``; thread-safe."""

    def __init__(self, path: str | Path, tag_header: str = DEFAULT_TAG_HEADER) -> None:
        self.path = Path(path)
        self.tag_header = tag_header
        self._lock = threading.Lock()
        self._count = 0
        self._file: IO[str] | None = self.path.open("w", encoding="utf-8")

    def write(self, ticket: LoggedRequest) -> None:
        """Add the line of one finished request (nothing once closed)."""
        with self._lock:
            if self._file is None:
                return
            self._count += 1
            line = {
                "n": self._count,
                "path": ticket.path,
                "tag": ticket.tag,
                "status": ticket.status,
                "faults": list(ticket.faults or ()),
                "disconnected": ticket.disconnected,
                "stream_finished": ticket.stream_finished,
            }
            self._file.write(json.dumps(line, separators=(",", ":")) + "\n")

    @property
    def lines(self) -> int:
        """Lines written so far."""
        with self._lock:
            return self._count

    def close(self) -> None:
        """Flush and close the file; later requests are not logged.  Idempotent."""
        with self._lock:
            file, self._file = self._file, None
        if file is not None:
            file.close()


def read_log(path: str | Path) -> Iterator[dict[str, Any]]:
    """The lines of a closed log, as dicts, in order (read lazily)."""
    with Path(path).open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                yield json.loads(line)
