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
names are folded into :data:`OTHER`.  What waits to be counted in is bounded
too: :data:`MAX_TALLIES` tallies of each kind and :data:`PENDING_MAX`
durations a histogram.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import reduce
from itertools import repeat
from operator import add
from typing import Any

__all__ = [
    "BREAKER_HISTORY",
    "HISTOGRAM_GAMMA",
    "HISTOGRAM_MAX_SECONDS",
    "HISTOGRAM_MIN_SECONDS",
    "LatencyHistogram",
    "MAX_TALLIES",
    "MAX_TRACKED_NAMES",
    "OTHER",
    "PENDING_MAX",
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


def _bucket_edges() -> list[float]:
    """The largest duration of each bucket below the top one, so that
    ``bisect_left(edges, s) == _bucket_of(s)`` for every ``s >= 0``: a batch of
    durations is bucketed in C, exactly as one by one."""
    edges = []
    for index in range(_TOP_BUCKET):
        edge = HISTOGRAM_MIN_SECONDS * HISTOGRAM_GAMMA**index
        while _bucket_of(edge) > index:  # the logarithm's rounding, either way
            edge = math.nextafter(edge, 0.0)
        while _bucket_of(math.nextafter(edge, math.inf)) <= index:
            edge = math.nextafter(edge, math.inf)
        edges.append(edge)
    return edges


_EDGES = _bucket_edges()
# Durations a histogram holds before bucketing them (it does on every read, or at this many).
PENDING_MAX = 512


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
    ones count as 0.  Thread-safe: ``lock`` (reentrant) may be shared with an
    owner that records under it (a :class:`StatsCollector`).

    A recorded duration waits in a list (at most :data:`PENDING_MAX`) until a
    read, or a full list, buckets the lot in C: the same figures, in the same
    order of addition, for a fraction of the work per duration.
    """

    __slots__ = ("_lock", "_pending", "_buckets", "_count", "_total", "_min", "_max")

    def __init__(self, lock: threading.RLock | None = None) -> None:
        self._lock = threading.RLock() if lock is None else lock
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._pending: list[float] = []  # finite and >= 0, or inf (dropped when bucketed)
            self._buckets: Counter[int] = Counter()
            self._count = 0
            self._total = 0.0
            self._min = math.inf
            self._max = -math.inf

    def record(self, seconds: float) -> None:
        if not math.isfinite(seconds):
            return
        if seconds < 0.0:
            seconds = 0.0
        with self._lock:
            pending = self._pending
            pending.append(seconds)
            if len(pending) >= PENDING_MAX:
                self._settle()

    def _settle(self) -> None:
        """(under the lock) The pending durations into their buckets and figures."""
        values = self._pending
        if not values:
            return
        self._pending = []
        if math.inf in values:
            values = [v for v in values if v != math.inf]
            if not values:
                return
        low, high = min(values), max(values)  # the first of equals, as one by one
        self._buckets.update(map(bisect_left, repeat(_EDGES), values))
        self._count += len(values)
        self._total = reduce(add, values, self._total)  # left to right, as one by one
        if low < self._min:
            self._min = low
        if high > self._max:
            self._max = high

    @property
    def count(self) -> int:
        with self._lock:
            self._settle()
            return self._count

    @property
    def total(self) -> float:
        with self._lock:
            self._settle()
            return self._total

    @property
    def min(self) -> float:
        with self._lock:
            self._settle()
            return self._min if self._count else 0.0

    @property
    def max(self) -> float:
        with self._lock:
            self._settle()
            return self._max if self._count else 0.0

    @property
    def mean(self) -> float:
        with self._lock:
            self._settle()
            return self._total / self._count if self._count else 0.0

    @property
    def bucket_count(self) -> int:
        """Buckets in use (the memory held)."""
        with self._lock:
            self._settle()
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
            self._settle()
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
            self._settle()
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
            self._settle()
            count, total = self._count, self._total
            low, high = (self._min, self._max) if count else (0.0, 0.0)
        out = {"count": count, "mean": total / count if count else 0.0, "min": low, "max": high}
        values = self.percentiles(SNAPSHOT_PERCENTILES)
        out.update({f"p{p}": v for p, v in zip(SNAPSHOT_PERCENTILES, values, strict=False)})
        return out

    def __repr__(self) -> str:
        with self._lock:
            self._settle()
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
    cost: float | None = None  # US dollars; None: the model has no price

    def __post_init__(self) -> None:
        if (  # the engine's records: plain figures, checked at once
            type(self.latency) is float and self.latency >= 0.0
            and type(self.queue_wait) is float and self.queue_wait >= 0.0
            and type(self.attempts) is int and self.attempts >= 0
            and type(self.tokens_in) is int and self.tokens_in >= 0
            and type(self.tokens_out) is int and self.tokens_out >= 0
            and (self.cost is None or type(self.cost) is float and self.cost >= 0.0)
        ):  # fmt: skip
            return
        cost = self.cost
        if cost is not None and (
            isinstance(cost, bool) or not isinstance(cost, (int, float)) or not cost >= 0
        ):
            raise ValueError(f"RequestRecord.cost must be US dollars >= 0 or None, got {cost!r}")
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
        "tokens_in": 0, "tokens_out": 0, "cost": 0.0, "latency_total": 0.0,
    }  # fmt: skip


def _new_key_row() -> dict[str, Any]:
    return {
        "requests": 0, "successes": 0, "failures": 0, "cancelled": 0, "attempts": 0,
        "rate_limited": 0, "tokens_in": 0, "tokens_out": 0, "cost": 0.0,
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


def _add_to_row(
    row: dict[str, Any], outcome: str, n: int, tokens_in: int, tokens_out: int, cost: float
) -> None:
    row["requests"] += n
    row[outcome] += n
    row["tokens_in"] += tokens_in
    row["tokens_out"] += tokens_out
    row["cost"] += cost


def _bounded_add(table: dict[Any, int], name: str | int, amount: int = 1) -> None:
    if name not in table and len(table) >= MAX_TRACKED_NAMES:
        name = OTHER
    table[name] = table.get(name, 0) + amount


# Tallied combinations, per kind, at most: later ones are counted one by one (as exactly).
MAX_TALLIES = 1000


class StatsCollector:
    """Counts requests, attempts, batches and breaker transitions.

    Every method takes one lock (reentrant, and its histograms' too) for a few
    dictionary updates; ``snapshot`` returns fresh plain data (dicts, lists,
    numbers) that the caller owns.

    The common case costs least: a request that succeeded at its first attempt
    adds to its (model, key, endpoint) combination's tally, an attempt to its
    (key, status, error kind) one's, and their durations wait in the
    histograms' lists.  A combination's first occurrence is counted in full
    (which gives its names their rows, or :data:`OTHER`, as they are met);
    ``snapshot`` adds the tallies in.  Integer sums do not depend on their
    order, and every float sum is still made in the order of recording.
    """

    def __init__(self, *, started_at_wall: float | None = None) -> None:
        self._lock = threading.RLock()
        self.latency = LatencyHistogram(self._lock)
        self.queue_wait = LatencyHistogram(self._lock)
        self.time_to_first_token = LatencyHistogram(self._lock)
        # seconds per output token of each stream: its rate, inverted
        self.time_per_token = LatencyHistogram(self._lock)
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
        self._cost = 0.0  # US dollars
        self._unpriced: set[str] = set()  # models that used tokens and have no price
        self._errors: dict[str, int] = {}
        self._models: dict[str, dict[str, Any]] = {}
        self._keys: dict[str, dict[str, Any]] = {}
        self._endpoints: dict[str, int] = {}
        self._statuses: dict[int | str, int] = {}
        # (model, key, endpoint) -> [successes at the first attempt, tokens in, tokens out,
        # the model's row or None (its latency total is added at once: a float sum keeps its order),
        # cost]
        self._tallies: dict[tuple[str | None, str | None, str | None], list[Any]] = {}
        # (key, status, error kind) -> attempts
        self._attempt_tallies: dict[tuple[str | None, int | None, str | None], int] = {}
        self._batches = 0
        self._batch_inputs = 0
        self._batch_members = 0
        self._batch_max_inputs = 0
        self._transitions: deque[dict[str, Any]] = deque(maxlen=BREAKER_HISTORY)
        for histogram in self._histograms():
            histogram.reset()

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
        cost: float | None = None,
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
            and (cost is None or type(cost) is float and cost >= 0.0)
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
                    cost,
                )
            )
            return
        with self._lock:
            tally = (
                self._tallies.get((model, key_name, endpoint))
                if success and attempts == 1
                else None
            )
            if tally is None:
                self._record(
                    success, latency, queue_wait, attempts, model, error_kind,
                    tokens_in, tokens_out, key_name, endpoint, cost,
                )  # fmt: skip
                return
            tally[0] += 1
            tally[1] += tokens_in
            tally[2] += tokens_out
            if cost is not None:
                tally[4] += cost
            elif tokens_in or tokens_out:
                self._unpriced_model(model)
            model_row = tally[3]
            if model_row is not None:
                model_row["latency_total"] += latency
            pending = self.latency._pending  # what LatencyHistogram.record does, without its checks
            pending.append(latency)
            waits = self.queue_wait._pending
            waits.append(queue_wait)
            # each list on its own: a read may have settled one and not the other
            if len(pending) >= PENDING_MAX:
                self.latency._settle()
            if len(waits) >= PENDING_MAX:
                self.queue_wait._settle()

    def record_request(self, rec: RequestRecord) -> None:
        """One finished logical request, successful or not."""
        with self._lock:
            self._record(
                rec.success, rec.latency, rec.queue_wait, rec.attempts, rec.model,
                rec.error_kind, rec.tokens_in, rec.tokens_out, rec.key_name, rec.endpoint,
                None if rec.cost is None else float(rec.cost),
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
        cost: float | None,
    ) -> None:
        """(under the lock) One finished request's figures, counted in full; a
        success at the first attempt starts its combination's tally."""
        if success:
            self._successes += 1
            outcome = "successes"
        elif error_kind == CANCELLED:
            self._cancelled += 1
            outcome = "cancelled"
        else:
            self._failures += 1
            outcome = "failures"
            _bounded_add(self._errors, error_kind or UNKNOWN_ERROR)
        self._attempts += attempts
        if attempts > 1:
            self._retried += 1
            self._retries += attempts - 1
        self._tokens_in += tokens_in
        self._tokens_out += tokens_out
        if cost is None:
            if tokens_in or tokens_out:
                self._unpriced_model(model)
            cost = 0.0
        self._cost += cost
        model_row = self._add_to_rows(
            model, key_name, endpoint, outcome, 1, tokens_in, tokens_out, cost
        )
        if model_row is not None:
            model_row["latency_total"] += latency
        self.latency.record(latency)
        self.queue_wait.record(queue_wait)
        if success and attempts == 1 and len(self._tallies) < MAX_TALLIES:
            self._tallies.setdefault((model, key_name, endpoint), [0, 0, 0, model_row, 0.0])

    def _unpriced_model(self, model: str | None) -> None:
        """(under the lock) ``model`` used tokens and has no price."""
        if model is not None and len(self._unpriced) < MAX_TRACKED_NAMES:
            self._unpriced.add(model)

    def _add_to_rows(
        self,
        model: str | None,
        key_name: str | None,
        endpoint: str | None,
        outcome: str,
        n: int,
        tokens_in: int,
        tokens_out: int,
        cost: float,
    ) -> dict[str, Any] | None:
        """(under the lock) ``n`` requests of one outcome in the model's, the
        key's and the endpoint's rows; returns the model's row."""
        model_row = None
        if model is not None:
            model_row = _bounded_row(self._models, model, _new_model_row)
            _add_to_row(model_row, outcome, n, tokens_in, tokens_out, cost)
        if key_name is not None:
            row = _bounded_row(self._keys, key_name, _new_key_row)
            _add_to_row(row, outcome, n, tokens_in, tokens_out, cost)
        if endpoint is not None:
            _bounded_add(self._endpoints, endpoint, n)
        return model_row

    def _add_tallies(self) -> None:
        """(under the lock) Count the tallies in, and start them again from 0."""
        for (model, key_name, endpoint), tally in self._tallies.items():
            n, tokens_in, tokens_out, cost = tally[0], tally[1], tally[2], tally[4]
            if n:
                tally[0] = tally[1] = tally[2] = 0
                tally[4] = 0.0
                self._successes += n
                self._attempts += n
                self._tokens_in += tokens_in
                self._tokens_out += tokens_out
                self._cost += cost
                self._add_to_rows(
                    model, key_name, endpoint, "successes", n, tokens_in, tokens_out, cost
                )
        attempts = self._attempt_tallies
        for (key_name, status, error_kind), n in attempts.items():
            if n:
                self._count_attempts(key_name, status, error_kind, n)
        self._attempt_tallies = dict.fromkeys(attempts, 0)

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
        combination = (key_name, status, error_kind)
        with self._lock:
            tallies = self._attempt_tallies
            n = tallies.get(combination)
            if n is not None:
                tallies[combination] = n + 1
                return
            self._count_attempts(key_name, status, error_kind, 1)
            if len(tallies) < MAX_TALLIES:
                tallies[combination] = 0

    def _count_attempts(
        self, key_name: str | None, status: int | None, error_kind: str | None, n: int
    ) -> None:
        """(under the lock) ``n`` HTTP tries alike."""
        self._http_attempts += n
        label: int | str = status if status is not None else (error_kind or NETWORK_STATUS)
        _bounded_add(self._statuses, label, n)
        if key_name is not None:
            row = _bounded_row(self._keys, key_name, _new_key_row)
            row["attempts"] += n
            if status == 429 or error_kind == "rate_limit":
                row["rate_limited"] += n

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

    def settle(self) -> None:
        """Count in what waits for a read (the tallies, the durations not yet
        bucketed) and let go of its buffers; the figures are unchanged.  A
        closing engine calls it, so a closed client keeps figures, not lists."""
        with self._lock:
            self._add_tallies()
            for histogram in self._histograms():
                histogram._settle()

    def _histograms(self) -> tuple[LatencyHistogram, ...]:
        return (self.latency, self.queue_wait, self.time_to_first_token, self.time_per_token)

    def snapshot(self) -> dict[str, Any]:
        """Every figure, as fresh plain data (see the module docstring)."""
        with self._lock:
            self._add_tallies()
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
                "cost": {
                    "total": self._cost,
                    "currency": "USD",
                    "unpriced_models": sorted(self._unpriced),
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
            self._add_tallies()
            return f"StatsCollector(requests={self._successes + self._failures}, failed={self._failures})"
