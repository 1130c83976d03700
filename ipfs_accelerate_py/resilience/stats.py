"""Request statistics in bounded memory, safe to share between threads.

A *request* is one logical call (one :class:`RequestRecord` when it
finishes); an *attempt* is one HTTP try (one :meth:`StatsCollector.record_attempt`).
So ``total_requests`` counts requests, ``retried_requests`` counts requests
that needed more than one attempt, and ``retry_rate`` can never pass 100%.

A request its caller cancelled is neither a success nor a failure:
``total_requests`` = successful + failed + cancelled, and ``success_rate``
is over the requests that finished.  A stream that started is also counted
by how it ended (``streams``), with its time to first token and, when it
completed, its rate (output tokens per second after the first chunk; kept
as seconds per token, so the rate's percentiles are exact inversions).

Memory stays bounded whatever the traffic: latencies go into log-bucketed
histograms (about a thousand buckets at most), the breaker history keeps the
last :data:`BREAKER_HISTORY` transitions, and per-model, per-key and
per-endpoint tables hold at most :data:`MAX_TRACKED_NAMES` names each; later
names are folded into :data:`OTHER`.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BREAKER_HISTORY",
    "HISTOGRAM_GAMMA",
    "HISTOGRAM_MAX_SECONDS",
    "HISTOGRAM_MIN_SECONDS",
    "LatencyHistogram",
    "MAX_TRACKED_NAMES",
    "OTHER",
    "RequestRecord",
    "SNAPSHOT_PERCENTILES",
    "StatsCollector",
]

HISTOGRAM_MIN_SECONDS = 1e-5  # 10 µs: everything at or below shares bucket 0
HISTOGRAM_MAX_SECONDS = 3600.0  # 1 h: everything above shares the top bucket
HISTOGRAM_GAMMA = 1.02  # bucket i covers (MIN * g**(i-1), MIN * g**i]: about ±1% precision
SNAPSHOT_PERCENTILES = (50, 90, 95, 99)
MAX_TRACKED_NAMES = 1000
OTHER = "other"
BREAKER_HISTORY = 50
UNKNOWN_ERROR = "unknown"
CANCELLED = (
    "cancelled"  # the error kind of a request its caller cancelled: neither a success nor a failure
)
NETWORK_STATUS = "network"

_LOG_GAMMA = math.log(HISTOGRAM_GAMMA)
# The overflow bucket: its lower edge MIN * g**(_TOP_BUCKET - 1) is above HISTOGRAM_MAX_SECONDS.
_TOP_BUCKET = math.ceil(math.log(HISTOGRAM_MAX_SECONDS / HISTOGRAM_MIN_SECONDS) / _LOG_GAMMA) + 1


def _bucket_of(seconds: float) -> int:
    if seconds <= HISTOGRAM_MIN_SECONDS:
        return 0
    index = math.ceil(math.log(seconds / HISTOGRAM_MIN_SECONDS) / _LOG_GAMMA)
    return min(max(index, 1), _TOP_BUCKET)


def _bucket_value(index: int) -> float:
    """A representative value of bucket ``index``: within ±(g-1)/(g+1) of any member."""
    upper = HISTOGRAM_MIN_SECONDS * HISTOGRAM_GAMMA**index
    return 2.0 * upper / (1.0 + HISTOGRAM_GAMMA)


class LatencyHistogram:
    """Durations in log-spaced buckets (a sparse dict of bucket -> count).

    ``count``, ``total``, ``min``, ``max`` and ``mean`` are exact;
    ``percentile`` is exact at p=0 (min) and p=100 (max) and otherwise within
    about 1% of the true nearest-rank value for durations between 10 µs and
    1 h; below 10 µs it reports the minimum, above 1 h the maximum.  Non-finite values are ignored and negative
    ones count as 0.  Thread-safe.
    """

    __slots__ = ("_lock", "_buckets", "_count", "_total", "_min", "_max")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._buckets: dict[int, int] = {}
            self._count = 0
            self._total = 0.0
            self._min = math.inf
            self._max = -math.inf

    def record(self, seconds: float) -> None:
        if not math.isfinite(seconds):
            return
        if seconds < 0.0:
            seconds = 0.0
        index = _bucket_of(seconds)
        with self._lock:
            self._buckets[index] = self._buckets.get(index, 0) + 1
            self._count += 1
            self._total += seconds
            if seconds < self._min:
                self._min = seconds
            if seconds > self._max:
                self._max = seconds

    @property
    def count(self) -> int:
        return self._count

    @property
    def total(self) -> float:
        return self._total

    @property
    def min(self) -> float:
        return self._min if self._count else 0.0

    @property
    def max(self) -> float:
        return self._max if self._count else 0.0

    @property
    def mean(self) -> float:
        with self._lock:
            return self._total / self._count if self._count else 0.0

    @property
    def bucket_count(self) -> int:
        """Buckets in use (the memory held)."""
        return len(self._buckets)

    def percentile(self, p: float) -> float:
        """The p-th percentile (nearest rank), p in [0, 100]; 0.0 when empty."""
        return self.percentiles((p,))[0]

    def percentiles(self, ps: Iterable[float]) -> list[float]:
        """Several percentiles from one consistent view, in the order given."""
        ps = list(ps)
        for p in ps:
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 100:
                raise ValueError(f"percentile must be a number in [0, 100], got {p!r}")
        with self._lock:
            if not self._count:
                return [0.0 for _ in ps]
            items = sorted(self._buckets.items())
            count, low, high = self._count, self._min, self._max
        return [self._rank_value(items, count, low, high, p) for p in ps]

    @staticmethod
    def _rank_value(
        items: list[tuple[int, int]], count: int, low: float, high: float, p: float
    ) -> float:
        if p <= 0:
            return low
        if p >= 100:
            return high
        rank = max(1, math.ceil(p / 100.0 * count))
        seen = 0
        for index, n in items:
            seen += n
            if seen >= rank:
                if index == 0:  # at or below HISTOGRAM_MIN_SECONDS: holds the minimum
                    return low
                if index == _TOP_BUCKET:  # above HISTOGRAM_MAX_SECONDS: holds the maximum
                    return high
                return min(max(_bucket_value(index), low), high)
        return high  # pragma: no cover - the counts always reach rank

    def distribution(self, bins: int = 40) -> list[list[float]]:
        """``[[upper bound in seconds, count], ...]`` ascending, at most ``bins``
        rows: the buckets from the smallest value to the largest, merged evenly
        (on the log scale) when there are more."""
        with self._lock:
            items = sorted(self._buckets.items())
        if not items:
            return []
        low, high = items[0][0], items[-1][0]
        width = max(1, math.ceil((high - low + 1) / max(1, bins)))
        rows: dict[int, int] = {}
        for index, count in items:
            group = (index - low) // width
            rows[group] = rows.get(group, 0) + count
        return [
            [
                HISTOGRAM_MIN_SECONDS
                * HISTOGRAM_GAMMA ** min(low + (group + 1) * width - 1, _TOP_BUCKET),
                count,
            ]
            for group, count in sorted(rows.items())
        ]

    def snapshot(self) -> dict[str, Any]:
        """``count``, ``mean``, ``min``, ``max``, ``p50``, ``p90``, ``p95``, ``p99``."""
        with self._lock:
            count, total = self._count, self._total
            low, high = (self._min, self._max) if count else (0.0, 0.0)
        out = {"count": count, "mean": total / count if count else 0.0, "min": low, "max": high}
        values = self.percentiles(SNAPSHOT_PERCENTILES)
        out.update({f"p{p}": v for p, v in zip(SNAPSHOT_PERCENTILES, values, strict=False)})
        return out

    def __repr__(self) -> str:
        return f"LatencyHistogram(count={self._count}, buckets={len(self._buckets)})"


@dataclass(frozen=True)
class RequestRecord:
    """One finished logical request (not an attempt).

    ``latency`` runs from submission to completion and ``queue_wait`` until
    its first attempt, in seconds.  ``error_kind`` is the ``ApiError.kind``
    of a failed request.  ``key_name`` is a key's caller-given name or
    fingerprint, never the key itself.
    """

    success: bool
    latency: float
    queue_wait: float = 0.0
    attempts: int = 1
    model: str | None = None
    error_kind: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    key_name: str | None = None
    endpoint: str | None = None

    def __post_init__(self) -> None:
        if (  # the engine's records: plain figures, checked at once
            type(self.latency) is float and self.latency >= 0.0
            and type(self.queue_wait) is float and self.queue_wait >= 0.0
            and type(self.attempts) is int and self.attempts >= 0
            and type(self.tokens_in) is int and self.tokens_in >= 0
            and type(self.tokens_out) is int and self.tokens_out >= 0
        ):  # fmt: skip
            return
        for name in ("latency", "queue_wait"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(
                    f"RequestRecord.{name} must be a number of seconds >= 0, got {value!r}"
                )
        for name in ("attempts", "tokens_in", "tokens_out"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"RequestRecord.{name} must be an integer >= 0, got {value!r}")


def _new_model_row() -> dict[str, Any]:
    return {
        "requests": 0, "successes": 0, "failures": 0, "cancelled": 0,
        "tokens_in": 0, "tokens_out": 0, "latency_total": 0.0,
    }  # fmt: skip


def _new_key_row() -> dict[str, Any]:
    return {
        "requests": 0, "successes": 0, "failures": 0, "cancelled": 0, "attempts": 0,
        "rate_limited": 0, "tokens_in": 0, "tokens_out": 0,
    }  # fmt: skip


def _bounded_row(
    table: dict[str, dict[str, Any]], name: str, factory: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """``table[name]``, created if there is room, else the shared OTHER row."""
    row: dict[str, Any] | None = table.get(name)
    if row is None:
        if len(table) >= MAX_TRACKED_NAMES:
            name = OTHER
            row = table.get(OTHER)
        if row is None:
            row = table[name] = factory()
    return row


def _rate(seconds_per_token: float) -> float:
    return 1.0 / seconds_per_token if seconds_per_token > 0 else 0.0


def _percent(part: int, whole: int) -> float:
    return min(100.0, 100.0 * part / whole) if whole else 0.0


def _bounded_add(table: dict[Any, int], name: str | int, amount: int = 1) -> None:
    if name not in table and len(table) >= MAX_TRACKED_NAMES:
        name = OTHER
    table[name] = table.get(name, 0) + amount


class StatsCollector:
    """Counts requests, attempts, batches and breaker transitions.

    Every method takes one lock for a few dictionary updates; ``snapshot``
    returns fresh plain data (dicts, lists, numbers) that the caller owns.
    """

    def __init__(self, *, started_at_wall: float | None = None) -> None:
        self._lock = threading.Lock()
        self.latency = LatencyHistogram()
        self.queue_wait = LatencyHistogram()
        self.time_to_first_token = LatencyHistogram()
        self.time_per_token = (
            LatencyHistogram()
        )  # seconds per output token of each stream: its rate, inverted
        self._started_at_wall = started_at_wall
        self._clear()

    def _clear(self) -> None:
        self._successes = 0
        self._failures = 0
        self._cancelled = 0
        self._streams: dict[str, int] = {}
        self._stream_tokens = 0
        self._stream_seconds = 0.0
        self._rejected = 0
        self._external = 0
        self._retried = 0
        self._retries = 0
        self._attempts = 0  # attempts of finished requests (sum of RequestRecord.attempts)
        self._http_attempts = 0  # record_attempt calls
        self._tokens_in = 0
        self._tokens_out = 0
        self._errors: dict[str, int] = {}
        self._models: dict[str, dict[str, Any]] = {}
        self._keys: dict[str, dict[str, Any]] = {}
        self._endpoints: dict[str, int] = {}
        self._statuses: dict[int | str, int] = {}
        self._batches = 0
        self._batch_inputs = 0
        self._batch_members = 0
        self._batch_max_inputs = 0
        self._transitions: deque[dict[str, Any]] = deque(maxlen=BREAKER_HISTORY)
        self.latency.reset()
        self.queue_wait.reset()
        self.time_to_first_token.reset()
        self.time_per_token.reset()

    def reset(self, *, started_at_wall: float | None = None) -> None:
        """Forget everything; ``started_at_wall``, if given, starts a new period."""
        with self._lock:
            self._clear()
            if started_at_wall is not None:
                self._started_at_wall = started_at_wall

    # ------------------------------------------------------------ recording

    def record_figures(
        self,
        success: bool,
        latency: float,
        queue_wait: float,
        attempts: int,
        model: str | None,
        error_kind: str | None,
        tokens_in: int,
        tokens_out: int,
        key_name: str | None,
        endpoint: str | None,
    ) -> None:
        """``record_request(RequestRecord(...))`` of these fields, without
        building the record when the figures are plain and valid (the engine's,
        once per request); otherwise the record is built, and checked, as ever."""
        if not (  # RequestRecord's own quick check: when it holds, the record adds nothing
            type(latency) is float and latency >= 0.0
            and type(queue_wait) is float and queue_wait >= 0.0
            and type(attempts) is int and attempts >= 0
            and type(tokens_in) is int and tokens_in >= 0
            and type(tokens_out) is int and tokens_out >= 0
        ):  # fmt: skip
            self.record_request(
                RequestRecord(
                    success,
                    latency,
                    queue_wait,
                    attempts,
                    model,
                    error_kind,
                    tokens_in,
                    tokens_out,
                    key_name,
                    endpoint,
                )
            )
            return
        with self._lock:
            self._record(
                success, latency, queue_wait, attempts, model, error_kind,
                tokens_in, tokens_out, key_name, endpoint,
            )  # fmt: skip

    def record_request(self, rec: RequestRecord) -> None:
        """One finished logical request, successful or not."""
        with self._lock:
            self._record(
                rec.success, rec.latency, rec.queue_wait, rec.attempts, rec.model,
                rec.error_kind, rec.tokens_in, rec.tokens_out, rec.key_name, rec.endpoint,
            )  # fmt: skip

    def _record(
        self,
        success: bool,
        latency: float,
        queue_wait: float,
        attempts: int,
        model: str | None,
        error_kind: str | None,
        tokens_in: int,
        tokens_out: int,
        key_name: str | None,
        endpoint: str | None,
    ) -> None:
        """(under the lock) One finished request's figures."""
        if success:
            self._successes += 1
        elif error_kind == CANCELLED:
            self._cancelled += 1
        else:
            self._failures += 1
            _bounded_add(self._errors, error_kind or UNKNOWN_ERROR)
        self._attempts += attempts
        if attempts > 1:
            self._retried += 1
            self._retries += attempts - 1
        self._tokens_in += tokens_in
        self._tokens_out += tokens_out
        outcome = "successes" if success else "cancelled" if error_kind == CANCELLED else "failures"
        if model is not None:
            row = _bounded_row(self._models, model, _new_model_row)
            self._add_to_row(row, outcome, tokens_in, tokens_out)
            row["latency_total"] += latency
        if key_name is not None:
            row = _bounded_row(self._keys, key_name, _new_key_row)
            self._add_to_row(row, outcome, tokens_in, tokens_out)
        if endpoint is not None:
            _bounded_add(self._endpoints, endpoint)
        self.latency.record(latency)
        self.queue_wait.record(queue_wait)

    def record_stream(
        self,
        *,
        outcome: str,
        time_to_first_token: float,
        output_tokens: int,
        generation_seconds: float,
    ) -> None:
        """One stream that had started (its request is recorded apart):
        ``outcome`` is ``"completed"`` or the kind of error that ended it
        (``"stream_stalled"``, ``"cancelled"``, ``"network"``, ...);
        ``time_to_first_token`` runs from submission to the first chunk,
        ``generation_seconds`` from the first chunk to the end."""
        with self._lock:
            _bounded_add(self._streams, outcome)
            self.time_to_first_token.record(time_to_first_token)
            if outcome == "completed" and output_tokens > 0 and generation_seconds > 0:
                self._stream_tokens += output_tokens
                self._stream_seconds += generation_seconds
                self.time_per_token.record(generation_seconds / output_tokens)

    def _stream_view(self) -> dict[str, Any]:
        ends = dict(self._streams)
        per_token = self.time_per_token
        rates = {}
        if (
            per_token.count
        ):  # a rate's p10 is the time per token's p90: the slow end stays the slow end
            p10, p50, p90 = per_token.percentiles((90, 50, 10))
            rates = {"p10": _rate(p10), "p50": _rate(p50), "p90": _rate(p90)}
        return {
            "total": sum(ends.values()),
            "completed": ends.get("completed", 0),
            "stalled": ends.get("stream_stalled", 0),
            "cancelled": ends.get(CANCELLED, 0),
            "failed": sum(n for kind, n in ends.items() if kind not in ("completed", CANCELLED)),
            "ended_by": ends,
            "time_to_first_token": self.time_to_first_token.snapshot(),
            "tokens_per_second": dict(
                overall=self._stream_tokens / self._stream_seconds if self._stream_seconds else 0.0,
                streams_measured=per_token.count,
                **rates,
            ),
        }

    @staticmethod
    def _add_to_row(row: dict[str, Any], outcome: str, tokens_in: int, tokens_out: int) -> None:
        row["requests"] += 1
        row[outcome] += 1
        row["tokens_in"] += tokens_in
        row["tokens_out"] += tokens_out

    def record_attempt(
        self,
        *,
        key_name: str | None = None,
        status: int | None = None,
        error_kind: str | None = None,
        latency: float = 0.0,
    ) -> None:
        """One HTTP try.  Counted by ``status``; without one (no answer) by
        ``error_kind`` ("timeout", ...) or else as ``"network"``."""
        del latency  # accepted for listeners; request latency is what is reported
        with self._lock:
            self._http_attempts += 1
            label: int | str = status if status is not None else (error_kind or NETWORK_STATUS)
            _bounded_add(self._statuses, label)
            if key_name is not None:
                row = _bounded_row(self._keys, key_name, _new_key_row)
                row["attempts"] += 1
                if status == 429 or error_kind == "rate_limit":
                    row["rate_limited"] += 1

    def record_rejected(self, error_kind: str) -> None:
        """A request refused before queueing (``queue_full``, ``circuit_open``,
        ...): a failed request with no attempt."""
        with self._lock:
            self._failures += 1
            self._rejected += 1
            _bounded_add(self._errors, error_kind or UNKNOWN_ERROR)

    def record_external(self, success: bool, error_kind: str | None = None) -> None:
        """The outcome of an operation made outside the client
        (``track_request_result``): counted, with no latency."""
        with self._lock:
            self._external += 1
            if success:
                self._successes += 1
            else:
                self._failures += 1
                _bounded_add(self._errors, error_kind or UNKNOWN_ERROR)

    def record_batch(self, inputs: int, members: int) -> None:
        """One batch sent: ``inputs`` items from ``members`` caller requests."""
        with self._lock:
            self._batches += 1
            self._batch_inputs += inputs
            self._batch_members += members
            if inputs > self._batch_max_inputs:
                self._batch_max_inputs = inputs

    def record_breaker_transition(self, old: str, new: str, now_wall: float) -> None:
        """A circuit breaker moved from ``old`` to ``new`` at wall time ``now_wall``."""
        with self._lock:
            self._transitions.append({"from": old, "to": new, "at_wall": now_wall})

    # ------------------------------------------------------------ reading

    def snapshot(self) -> dict[str, Any]:
        """Every figure, as fresh plain data (see the module docstring)."""
        with self._lock:
            finished = self._successes + self._failures
            total = finished + self._cancelled
            out: dict[str, Any] = {
                "total_requests": total,
                "successful_requests": self._successes,
                "failed_requests": self._failures,
                "cancelled_requests": self._cancelled,
                "rejected_requests": self._rejected,
                "external_results": self._external,
                "retried_requests": self._retried,
                "total_retries": self._retries,
                "total_attempts": self._attempts,
                "http_attempts": self._http_attempts,
                "success_rate": _percent(self._successes, finished),
                "retry_rate": _percent(self._retried, total),
                "errors_by_type": dict(self._errors),
                "models": {name: self._model_view(row) for name, row in self._models.items()},
                "endpoints": dict(self._endpoints),
                "keys": {name: dict(row) for name, row in self._keys.items()},
                "attempt_status_counts": dict(self._statuses),
                "tokens": {
                    "input": self._tokens_in,
                    "output": self._tokens_out,
                    "total": self._tokens_in + self._tokens_out,
                },
                "batches": self._batch_view(),
                "breaker_transitions": [dict(t) for t in self._transitions],
                "started_at_wall": self._started_at_wall,
                "latency": self.latency.snapshot(),
                "queue_wait": self.queue_wait.snapshot(),
                "streams": self._stream_view(),
            }
        out["average_response_time"] = out["latency"]["mean"]
        return out

    @staticmethod
    def _model_view(row: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in row.items() if k != "latency_total"}
        view["average_response_time"] = (
            row["latency_total"] / row["requests"] if row["requests"] else 0.0
        )
        return view

    def _batch_view(self) -> dict[str, Any]:
        n = self._batches
        return {
            "count": n,
            "inputs": self._batch_inputs,
            "members": self._batch_members,
            "average_inputs": self._batch_inputs / n if n else 0.0,
            "average_members": self._batch_members / n if n else 0.0,
            "max_inputs": self._batch_max_inputs,
        }

    def __repr__(self) -> str:
        with self._lock:
            return f"StatsCollector(requests={self._successes + self._failures}, failed={self._failures})"
