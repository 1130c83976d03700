"""What the simulator saw: thread-safe, bounded counters of API requests.

An API request is any request not under ``/_admin/``.  ``snapshot()``
returns a consistent copy, the same dict that ``GET /_admin/counters``
serves (so numeric map keys such as statuses and sizes are strings)::

    requests_total        API requests received (counted on arrival)
    in_flight             API requests being handled now
    peak_concurrency      highest in_flight seen since the last reset
    by_key                {key fingerprint: requests}; fingerprint =
                          sha256(key).hexdigest()[:8], "anonymous" without a key
    by_path               {path: requests}
    by_format             {wire format name: requests}; "proxy" for requests forwarded
                          to the upstream (a path no format claims while upstream is set)
    by_status             {"200": responses, ...}; a dropped connection has none
    by_model              {model: requests whose body named it}
    rate_limited          responses with status 429 (limits, faults and script)
    faults                {kind: times injected}; kinds: error, outage, drop, hang,
                          malformed, stream_stall, stream_cut, stream_malformed,
                          scripted (a script entry answered the request)
    client_disconnects    requests whose client went away before the response ended
    streams               {"started": n, "finished": n} (finished = every event and the
                          format's terminator, e.g. [DONE], sent)
    tokens                {"prompt", "completion", "total"} of successful answers
    embedding_inputs      {"calls", "total", "by_size": {"3": calls}, "recent": [sizes,
                          last 1000]} for valid embeddings calls

Maps keyed by client-chosen values hold at most a fixed number of entries;
the excess is counted under ``"other"``.  With a :class:`.request_log.RequestLog`
set as ``request_log``, each finished request also gets a line there (which
request, tagged how, answered what, with which faults).
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import threading
from typing import TypedDict

from .request_log import RequestLog, current_faults

__all__ = ["CounterSnapshot", "Counters", "Ticket", "key_fingerprint"]

ANONYMOUS = "anonymous"
OTHER = "other"
MAX_MAP_ENTRIES = 1000
RECENT_SIZES = 1000
FINGERPRINT_CACHE = 4096
FAULT_KINDS = (
    "error",
    "outage",
    "drop",
    "hang",
    "malformed",
    "stream_stall",
    "stream_cut",
    "stream_malformed",
    "scripted",
)

_fingerprints: dict[str, str] = {}


def key_fingerprint(key: str | None) -> str:
    """``sha256(key).hexdigest()[:8]``, or ``"anonymous"``: how counters name a key."""
    if not key:
        return ANONYMOUS
    found = _fingerprints.get(key)
    if found is None:
        if len(_fingerprints) >= FINGERPRINT_CACHE:
            _fingerprints.clear()
        found = _fingerprints[key] = hashlib.sha256(key.encode()).hexdigest()[:8]
    return found


class Ticket:
    """One API request's record, filled in while it is handled, then finished."""

    __slots__ = (
        "path",
        "key",
        "request_id",
        "status",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "embedding_inputs",
        "disconnected",
        "stream_finished",
        "tag",
        "faults",
    )

    def __init__(self, path: str, key: str, request_id: str) -> None:
        self.path = path
        self.key = key
        self.request_id = request_id
        self.status: int | None = None
        self.model: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.embedding_inputs: int | None = None
        self.disconnected = False
        self.stream_finished = False
        self.tag: str | None = None  # the request log's tag header (only while a log is on)
        self.faults: list[str] | None = None  # faults injected into it (only while a log is on)


class StreamCounts(TypedDict):
    started: int
    finished: int


class EmbeddingInputs(TypedDict):
    calls: int
    total: int
    by_size: dict[str, int]
    recent: list[int]


class CounterSnapshot(TypedDict):
    """What ``GET /_admin/counters`` answers (see the module docstring)."""

    requests_total: int
    in_flight: int
    peak_concurrency: int
    by_key: dict[str, int]
    by_path: dict[str, int]
    by_format: dict[str, int]
    by_status: dict[str, int]
    by_model: dict[str, int]
    rate_limited: int
    faults: dict[str, int]
    client_disconnects: int
    streams: StreamCounts
    tokens: dict[str, int]
    embedding_inputs: EmbeddingInputs


def _bump(table: dict[str, int], name: str, by: int = 1) -> None:
    if name not in table and len(table) >= MAX_MAP_ENTRIES:
        name = OTHER
    table[name] = table.get(name, 0) + by


class Counters:
    """The counters (see the module docstring); every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.in_flight = 0
        self.request_log: RequestLog | None = None  # set by Simulator.log_requests
        self._zero()

    def _zero(self) -> None:
        self.requests_total = 0
        self.peak = self.in_flight
        self.by_key: dict[str, int] = {}
        self.by_path: dict[str, int] = {}
        self.by_format: dict[str, int] = {}
        self.by_status: dict[str, int] = {}
        self.by_model: dict[str, int] = {}
        self.rate_limited = 0
        self.faults = dict.fromkeys(FAULT_KINDS, 0)
        self.disconnects = 0
        self.streams_started = 0
        self.streams_finished = 0
        self.tokens = {"prompt": 0, "completion": 0, "total": 0}
        self.embed_calls = 0
        self.embed_total = 0
        self.embed_sizes: dict[str, int] = {}
        self.embed_recent: collections.deque[int] = collections.deque(maxlen=RECENT_SIZES)

    def reset(self) -> None:
        """Zero everything; requests still in flight stay counted in ``in_flight``."""
        with self._lock:
            self._zero()

    def begin(self, path: str, key: str, wire_format: str = "openai") -> Ticket:
        """Count an arriving request (``key`` is a fingerprint) and return its ticket."""
        with self._lock:
            self.requests_total += 1
            self.in_flight += 1
            if self.in_flight > self.peak:
                self.peak = self.in_flight
            _bump(self.by_key, key)
            _bump(self.by_path, path)
            _bump(self.by_format, wire_format)
            number = next(self._ids)
        return Ticket(path, key, f"req_sim{number}")

    def finish(self, ticket: Ticket) -> None:
        """Count what happened to a request once it is over."""
        with self._lock:
            self.in_flight -= 1
            status = ticket.status
            if status is not None:
                _bump(self.by_status, str(status))
                if status == 429:
                    self.rate_limited += 1
                elif status < 300:
                    self._served(ticket)
            if ticket.model is not None:
                _bump(self.by_model, ticket.model)
            if ticket.disconnected:
                self.disconnects += 1
            if ticket.stream_finished:
                self.streams_finished += 1
        log = self.request_log
        if log is not None and ticket.faults is not None:
            log.write(ticket)

    def _served(self, ticket: Ticket) -> None:
        self.tokens["prompt"] += ticket.prompt_tokens
        self.tokens["completion"] += ticket.completion_tokens
        self.tokens["total"] += ticket.prompt_tokens + ticket.completion_tokens
        size = ticket.embedding_inputs
        if size is not None:
            self.embed_calls += 1
            self.embed_total += size
            _bump(self.embed_sizes, str(size))
            self.embed_recent.append(size)

    def fault(self, kind: str) -> None:
        """Count one injected fault of ``kind`` (one of ``FAULT_KINDS``)."""
        with self._lock:
            self.faults[kind] += 1
        faults = current_faults.get()
        if faults is not None:
            faults.append(kind)

    def stream_started(self) -> None:
        with self._lock:
            self.streams_started += 1

    def snapshot(self) -> CounterSnapshot:
        """A consistent, JSON-ready copy of every counter."""
        with self._lock:
            return {
                "requests_total": self.requests_total,
                "in_flight": self.in_flight,
                "peak_concurrency": self.peak,
                "by_key": dict(self.by_key),
                "by_path": dict(self.by_path),
                "by_format": dict(self.by_format),
                "by_status": dict(self.by_status),
                "by_model": dict(self.by_model),
                "rate_limited": self.rate_limited,
                "faults": dict(self.faults),
                "client_disconnects": self.disconnects,
                "streams": {"started": self.streams_started, "finished": self.streams_finished},
                "tokens": dict(self.tokens),
                "embedding_inputs": {
                    "calls": self.embed_calls,
                    "total": self.embed_total,
                    "by_size": dict(self.embed_sizes),
                    "recent": list(self.embed_recent),
                },
            }
