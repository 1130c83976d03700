"""LatencyHistogram and StatsCollector: exact counts, precision, bounded memory, threads."""

from __future__ import annotations

import math
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfs_accelerate_py.resilience.stats import (
    BREAKER_HISTORY,
    MAX_TRACKED_NAMES,
    OTHER,
    LatencyHistogram,
    RequestRecord,
    StatsCollector,
)


def exact_percentile(values: list[float], p: float) -> float:
    """Nearest rank, the definition the histogram approximates."""
    ordered = sorted(values)
    if p <= 0:
        return ordered[0]
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


# ---------------------------------------------------------------- histogram


def test_empty_histogram():
    h = LatencyHistogram()
    assert (h.count, h.total, h.min, h.max, h.mean) == (0, 0.0, 0.0, 0.0, 0.0)
    assert h.percentile(50) == 0.0
    zeros = {
        "count": 0,
        "mean": 0.0,
        "min": 0.0,
        "max": 0.0,
        "p50": 0.0,
        "p90": 0.0,
        "p95": 0.0,
        "p99": 0.0,
    }
    assert h.snapshot() == zeros


def test_exact_aggregates():
    h = LatencyHistogram()
    for v in (0.5, 0.1, 2.0, 0.4):
        h.record(v)
    assert h.count == 4
    assert h.total == pytest.approx(3.0)
    assert h.mean == pytest.approx(0.75)
    assert (h.min, h.max) == (0.1, 2.0)
    assert h.percentile(0) == 0.1 and h.percentile(100) == 2.0


@pytest.mark.parametrize(
    "name, draw",
    [
        ("uniform 0-1 s", lambda r: r.uniform(0.0, 1.0)),
        ("exponential mean 100 ms", lambda r: r.expovariate(10.0)),
        ("log-uniform 100 µs-100 s", lambda r: 10 ** r.uniform(-4, 2)),
        ("lognormal", lambda r: r.lognormvariate(-2.0, 1.0)),
    ],
)
def test_percentiles_within_two_percent(name, draw):
    rng = random.Random(42)
    values = [draw(rng) for _ in range(20_000)]
    h = LatencyHistogram()
    for v in values:
        h.record(v)
    for p in (1, 10, 25, 50, 75, 90, 95, 99, 99.9):
        expected = exact_percentile(values, p)
        assert h.percentile(p) == pytest.approx(expected, rel=0.02), (name, p)
    assert h.mean == pytest.approx(sum(values) / len(values))


def test_single_value_is_reported_exactly():
    h = LatencyHistogram()
    for _ in range(10):
        h.record(0.123)
    assert h.snapshot()["p50"] == 0.123 and h.percentile(99) == 0.123


def test_values_outside_the_range_are_clamped_to_min_and_max():
    h = LatencyHistogram()
    for v in (0.0, 0.0, 1e-7, 7200.0):
        h.record(v)
    assert h.percentile(25) == 0.0
    assert h.percentile(50) == 0.0  # bucket 0 reports the recorded minimum
    assert h.percentile(100) == 7200.0
    assert h.percentile(99) == 7200.0  # the top bucket clamps to the recorded maximum


def test_negative_and_non_finite_values():
    h = LatencyHistogram()
    h.record(-1.0)
    h.record(float("nan"))
    h.record(float("inf"))
    assert h.count == 1 and h.min == 0.0 and h.max == 0.0


@pytest.mark.parametrize("bad", [-0.1, 100.1, "50", None, True])
def test_percentile_argument_is_checked(bad):
    with pytest.raises(ValueError):
        LatencyHistogram().percentile(bad)


def test_memory_bounded_after_a_million_records():
    rng = random.Random(3)
    h = LatencyHistogram()
    record = h.record
    for _ in range(1_000_000):
        record(10 ** rng.uniform(-7, 5))  # 0.1 µs to a day: beyond both ends
    assert h.count == 1_000_000
    assert h.bucket_count <= 1100
    assert len(h._buckets) == h.bucket_count


def test_histogram_reset():
    h = LatencyHistogram()
    h.record(1.0)
    h.reset()
    assert h.count == 0 and h.bucket_count == 0 and h.percentile(90) == 0.0
    h.record(2.0)
    assert h.min == 2.0 and h.max == 2.0


# ---------------------------------------------------------------- collector

RECORDS = [
    RequestRecord(success=True, latency=0.2, queue_wait=0.01, model="gpt", tokens_in=10, tokens_out=5, key_name="k1", endpoint="chat"),
    RequestRecord(success=True, latency=0.4, attempts=3, model="gpt", tokens_in=20, tokens_out=7, key_name="k2", endpoint="chat"),
    RequestRecord(success=False, latency=1.0, attempts=4, model="gpt", error_kind="rate_limit", key_name="k1", endpoint="chat"),
    RequestRecord(success=False, latency=0.3, model="emb", error_kind="authentication", endpoint="embeddings"),
    RequestRecord(success=True, latency=0.1, attempts=2, model="emb", tokens_in=3, endpoint="embeddings"),
    RequestRecord(success=False, latency=0.5, attempts=0, error_kind=None),
]  # fmt: skip


def test_exact_counts_from_a_table_of_records():
    s = StatsCollector(started_at_wall=1_700_000_000.0)
    for rec in RECORDS:
        s.record_request(rec)
    s.record_rejected("queue_full")
    s.record_rejected("circuit_open")
    snap = s.snapshot()
    assert snap["total_requests"] == 8
    assert snap["successful_requests"] == 3
    assert snap["failed_requests"] == 5
    assert snap["rejected_requests"] == 2
    assert snap["retried_requests"] == 3
    assert snap["total_retries"] == 2 + 3 + 1
    assert snap["total_attempts"] == 1 + 3 + 4 + 1 + 2 + 0
    assert snap["success_rate"] == pytest.approx(100 * 3 / 8)
    assert snap["retry_rate"] == pytest.approx(100 * 3 / 8)
    assert snap["average_response_time"] == pytest.approx(2.5 / 6)
    assert snap["latency"]["count"] == 6 and snap["latency"]["max"] == 1.0
    assert snap["queue_wait"]["count"] == 6 and snap["queue_wait"]["max"] == 0.01
    assert snap["errors_by_type"] == {
        "rate_limit": 1, "authentication": 1, "unknown": 1, "queue_full": 1, "circuit_open": 1,
    }  # fmt: skip
    assert snap["models"] == {
        "gpt": {"requests": 3, "successes": 2, "failures": 1, "cancelled": 0, "tokens_in": 30, "tokens_out": 12,
                "cost": 0.0, "average_response_time": pytest.approx(1.6 / 3)},
        "emb": {"requests": 2, "successes": 1, "failures": 1, "cancelled": 0, "tokens_in": 3, "tokens_out": 0,
                "cost": 0.0, "average_response_time": pytest.approx(0.2)},
    }  # fmt: skip
    assert snap["endpoints"] == {"chat": 3, "embeddings": 2}
    assert snap["keys"]["k1"] == {
        "requests": 2, "successes": 1, "failures": 1, "cancelled": 0, "attempts": 0, "rate_limited": 0,
        "tokens_in": 10, "tokens_out": 5, "cost": 0.0,
    }  # fmt: skip
    assert snap["keys"]["k2"]["requests"] == 1 and snap["keys"]["k2"]["tokens_out"] == 7
    assert snap["tokens"] == {"input": 33, "output": 12, "total": 45}
    # records without a cost: their models used tokens and had no price
    assert snap["cost"] == {"total": 0.0, "currency": "USD", "unpriced_models": ["emb", "gpt"]}
    assert snap["started_at_wall"] == 1_700_000_000.0


def test_cost_adds_up_by_model_and_key_on_the_fast_path_and_the_full_one():
    s = StatsCollector()
    # a first success starts its tally; the next two add to it; a retried one is counted in full
    for _ in range(3):
        s.record_figures(True, 0.1, 0.0, 1, "m", None, 1000, 500, "k1", "chat", 0.25)
    s.record_figures(True, 0.1, 0.0, 2, "m", None, 1000, 500, "k2", "chat", 0.25)
    s.record_figures(False, 0.1, 0.0, 1, "m", "server", 0, 0, "k2", "chat", 0.0)
    # a model without a price: no cost, named as unpriced (tokens used); none used: not named
    s.record_figures(True, 0.1, 0.0, 1, "free", None, 10, 10, "k1", "chat", None)
    s.record_figures(True, 0.1, 0.0, 1, "free", None, 10, 10, "k1", "chat", None)
    s.record_figures(True, 0.1, 0.0, 1, "quiet", None, 0, 0, "k1", "chat", None)
    snap = s.snapshot()
    assert snap["cost"]["total"] == pytest.approx(1.0)
    assert snap["models"]["m"]["cost"] == pytest.approx(1.0)
    assert snap["models"]["free"]["cost"] == 0.0
    assert snap["keys"]["k1"]["cost"] == pytest.approx(0.75)
    assert snap["keys"]["k2"]["cost"] == pytest.approx(0.25)
    assert snap["cost"]["unpriced_models"] == ["free"]
    # counted once: a second read adds nothing
    assert s.snapshot()["cost"]["total"] == pytest.approx(1.0)


@pytest.mark.parametrize("cost", [-0.1, float("nan"), "1", True])
def test_a_bad_cost_is_refused_naming_the_field(cost):
    with pytest.raises(ValueError, match="RequestRecord.cost"):
        RequestRecord(success=True, latency=0.1, cost=cost)


def test_empty_snapshot_is_all_zero():
    snap = StatsCollector().snapshot()
    counters = (
        "total_requests",
        "successful_requests",
        "failed_requests",
        "retried_requests",
        "total_retries",
    )
    for key in counters + ("total_attempts",):
        assert snap[key] == 0, key
    assert snap["average_response_time"] == 0.0
    assert snap["success_rate"] == 0.0 and snap["retry_rate"] == 0.0
    assert snap["latency"]["p99"] == 0.0
    assert snap["batches"] == {
        "count": 0, "inputs": 0, "members": 0, "average_inputs": 0.0, "average_members": 0.0, "max_inputs": 0,
    }  # fmt: skip
    assert snap["breaker_transitions"] == [] and snap["started_at_wall"] is None


@pytest.mark.parametrize(
    "attempt, label",
    [
        (dict(status=200), 200),
        (dict(status=429, error_kind="rate_limit"), 429),
        (dict(status=None), "network"),
        (dict(error_kind="network"), "network"),
        (dict(error_kind="timeout"), "timeout"),
    ],
)
def test_attempt_status_labels(attempt, label):
    s = StatsCollector()
    s.record_attempt(**attempt)
    assert s.snapshot()["attempt_status_counts"] == {label: 1}
    assert s.snapshot()["http_attempts"] == 1


def test_attempts_per_key_and_rate_limited():
    s = StatsCollector()
    s.record_attempt(key_name="k1", status=429, latency=0.1)
    s.record_attempt(key_name="k1", error_kind="rate_limit")
    s.record_attempt(key_name="k1", status=200)
    s.record_attempt(key_name="k2", status=500)
    s.record_attempt(status=200)
    snap = s.snapshot()
    assert snap["keys"]["k1"]["attempts"] == 3 and snap["keys"]["k1"]["rate_limited"] == 2
    assert snap["keys"]["k2"]["attempts"] == 1 and snap["keys"]["k2"]["rate_limited"] == 0
    assert snap["keys"]["k1"]["requests"] == 0
    assert snap["attempt_status_counts"] == {429: 1, "rate_limit": 1, 200: 2, 500: 1}
    assert snap["total_requests"] == 0  # attempts are not requests


def test_batches():
    s = StatsCollector()
    for inputs, members in [(8, 3), (32, 10), (2, 2)]:
        s.record_batch(inputs, members)
    assert s.snapshot()["batches"] == {
        "count": 3, "inputs": 42, "members": 15, "average_inputs": 14.0, "average_members": 5.0, "max_inputs": 32,
    }  # fmt: skip


def test_breaker_transitions_keep_the_last_fifty():
    s = StatsCollector()
    for i in range(BREAKER_HISTORY + 20):
        s.record_breaker_transition("CLOSED", "OPEN", float(i))
    history = s.snapshot()["breaker_transitions"]
    assert len(history) == BREAKER_HISTORY
    assert history[0] == {"from": "CLOSED", "to": "OPEN", "at_wall": 20.0}
    assert history[-1]["at_wall"] == float(BREAKER_HISTORY + 19)


def test_names_are_capped_and_folded_into_other():
    s = StatsCollector()
    n = MAX_TRACKED_NAMES + 500
    for i in range(n):
        rec = RequestRecord(
            success=True,
            latency=0.1,
            model=f"m{i}",
            key_name=f"k{i}",
            endpoint=f"e{i}",
            tokens_in=1,
        )
        s.record_request(rec)
        s.record_attempt(key_name=f"k{i}", status=200 + i)
    snap = s.snapshot()
    for table in ("models", "keys", "endpoints", "attempt_status_counts"):
        assert len(snap[table]) == MAX_TRACKED_NAMES + 1, table
    assert snap["models"][OTHER]["requests"] == 500 and snap["models"][OTHER]["tokens_in"] == 500
    assert snap["models"][OTHER]["average_response_time"] == pytest.approx(0.1)
    assert snap["keys"][OTHER]["attempts"] == 500
    assert snap["endpoints"][OTHER] == 500
    assert sum(r["requests"] for r in snap["models"].values()) == n
    # A name already tracked keeps its own row.
    s.record_request(RequestRecord(success=False, latency=0.1, model="m0", error_kind="server"))
    assert s.snapshot()["models"]["m0"]["failures"] == 1


def test_snapshot_is_a_copy():
    s = StatsCollector()
    s.record_request(RECORDS[0])
    snap = s.snapshot()
    snap["models"]["gpt"]["requests"] = 99
    snap["keys"].clear()
    assert s.snapshot()["models"]["gpt"]["requests"] == 1
    assert "k1" in s.snapshot()["keys"]


def test_reset():
    s = StatsCollector(started_at_wall=5.0)
    for rec in RECORDS:
        s.record_request(rec)
    s.record_attempt(key_name="k", status=200)
    s.record_batch(4, 2)
    s.record_breaker_transition("CLOSED", "OPEN", 1.0)
    s.reset()
    snap = s.snapshot()
    assert snap["total_requests"] == 0 and snap["latency"]["count"] == 0
    assert snap["models"] == {} and snap["keys"] == {} and snap["attempt_status_counts"] == {}
    assert snap["batches"]["count"] == 0 and snap["breaker_transitions"] == []
    assert snap["started_at_wall"] == 5.0
    s.reset(started_at_wall=9.0)
    assert s.snapshot()["started_at_wall"] == 9.0


@pytest.mark.parametrize(
    "field, value",
    [("latency", -0.1), ("latency", float("nan")), ("queue_wait", -1.0), ("attempts", -1), ("attempts", 1.5),
     ("tokens_in", -5), ("tokens_out", True)],
)  # fmt: skip
def test_request_record_validates(field, value):
    with pytest.raises(ValueError, match=field):
        RequestRecord(**{"success": True, "latency": 0.1, field: value})


def test_request_record_is_frozen():
    rec = RequestRecord(success=True, latency=0.1)
    with pytest.raises(AttributeError):
        rec.success = False  # type: ignore[misc]


def test_threaded_stress_totals_exact(frequent_thread_switches):
    s = StatsCollector()
    threads_n, per_thread = 8, 10_000
    barrier = threading.Barrier(threads_n)

    def work(tid: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            ok = i % 4 != 0
            s.record_request(
                RequestRecord(
                    success=ok, latency=0.001 * (i % 50 + 1), attempts=1 + (i % 3 == 0),
                    model=f"m{tid % 2}", tokens_in=2, error_kind=None if ok else "server",
                    key_name=f"k{tid}",
                )
            )  # fmt: skip
            if i % 10 == 0:
                s.record_attempt(key_name=f"k{tid}", status=200)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = s.snapshot()
    total = threads_n * per_thread
    failures_per_thread = per_thread // 4
    retried_per_thread = len(range(0, per_thread, 3))
    assert snap["total_requests"] == total
    assert snap["failed_requests"] == threads_n * failures_per_thread
    assert snap["successful_requests"] == total - threads_n * failures_per_thread
    assert snap["retried_requests"] == snap["total_retries"] == threads_n * retried_per_thread
    assert snap["tokens"]["input"] == 2 * total
    assert snap["latency"]["count"] == total
    assert snap["errors_by_type"] == {"server": threads_n * failures_per_thread}
    assert sum(m["requests"] for m in snap["models"].values()) == total
    assert all(snap["keys"][f"k{t}"]["attempts"] == per_thread // 10 for t in range(threads_n))
    assert snap["attempt_status_counts"] == {200: threads_n * per_thread // 10}


# ---------------------------------------------------------------- properties

records_strategy = st.builds(
    RequestRecord,
    success=st.booleans(),
    latency=st.floats(0.0, 10_000.0, allow_nan=False),
    queue_wait=st.floats(0.0, 100.0, allow_nan=False),
    attempts=st.integers(0, 6),
    model=st.sampled_from([None, "a", "b"]),
    error_kind=st.sampled_from([None, "server", "timeout", "rate_limit"]),
    tokens_in=st.integers(0, 1000),
    tokens_out=st.integers(0, 1000),
    key_name=st.sampled_from([None, "k1", "k2"]),
    endpoint=st.sampled_from([None, "chat", "embeddings"]),
)
events_strategy = st.lists(
    st.one_of(records_strategy, st.sampled_from(["queue_full", "circuit_open"])), max_size=60
)


@settings(max_examples=200, deadline=None)
@given(events_strategy)
def test_invariants_for_any_records(events):
    s = StatsCollector()
    for ev in events:
        if isinstance(ev, str):
            s.record_rejected(ev)
        else:
            s.record_request(ev)
    snap = s.snapshot()
    records = [e for e in events if not isinstance(e, str)]
    assert snap["total_requests"] == len(events)
    assert snap["total_requests"] == snap["successful_requests"] + snap["failed_requests"]
    assert 0 <= snap["retried_requests"] <= snap["total_requests"]
    assert 0.0 <= snap["retry_rate"] <= 100.0 and 0.0 <= snap["success_rate"] <= 100.0
    assert snap["total_retries"] == sum(max(0, r.attempts - 1) for r in records)
    assert sum(snap["errors_by_type"].values()) == snap["failed_requests"]
    assert snap["tokens"]["total"] == sum(r.tokens_in + r.tokens_out for r in records)
    lat = snap["latency"]
    if records:
        assert lat["min"] == min(r.latency for r in records) and lat["max"] == max(
            r.latency for r in records
        )
    values = [lat["min"], lat["p50"], lat["p90"], lat["p95"], lat["p99"], lat["max"]]
    assert values == sorted(values)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.0, 1e5, allow_nan=False), min_size=1, max_size=200),
    st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=2, max_size=10),
)
def test_percentiles_monotone_and_within_min_max(values, ps):
    h = LatencyHistogram()
    for v in values:
        h.record(v)
    ps = sorted(ps)
    got = h.percentiles(ps)
    assert got == sorted(got)
    assert all(min(values) <= g <= max(values) for g in got)
    for p, g in zip(ps, got, strict=True):
        exact = exact_percentile(values, p)
        # within bucket precision (2%), or 10 µs absolute at the very bottom, or clamped at the top
        assert g == pytest.approx(exact, rel=0.02, abs=1e-5) or exact > 3600.0


# ------------------------------------------------------------ cancelled and streams


def test_a_cancelled_request_is_neither_a_success_nor_a_failure():
    s = StatsCollector()
    s.record_request(RequestRecord(success=True, latency=0.1, model="m", key_name="k"))
    s.record_request(
        RequestRecord(success=False, latency=0.1, model="m", key_name="k", error_kind="server")
    )
    s.record_request(
        RequestRecord(success=False, latency=0.1, model="m", key_name="k", error_kind="cancelled")
    )
    snap = s.snapshot()
    assert (
        snap["total_requests"],
        snap["successful_requests"],
        snap["failed_requests"],
        snap["cancelled_requests"],
    ) == (3, 1, 1, 1)
    assert snap["success_rate"] == 50.0  # over the requests that finished
    assert snap["errors_by_type"] == {"server": 1}
    for row in (snap["models"]["m"], snap["keys"]["k"]):
        assert (row["requests"], row["successes"], row["failures"], row["cancelled"]) == (
            3,
            1,
            1,
            1,
        )


def test_streams_are_counted_by_how_they_ended_with_first_token_times_and_rates():
    s = StatsCollector()
    s.record_stream(
        outcome="completed", time_to_first_token=0.5, output_tokens=100, generation_seconds=2.0
    )  # 50/s
    s.record_stream(
        outcome="completed", time_to_first_token=0.25, output_tokens=30, generation_seconds=1.0
    )  # 30/s
    s.record_stream(
        outcome="completed", time_to_first_token=1.0, output_tokens=10, generation_seconds=1.0
    )  # 10/s
    s.record_stream(
        outcome="stream_stalled", time_to_first_token=0.1, output_tokens=5, generation_seconds=30.0
    )
    s.record_stream(
        outcome="cancelled", time_to_first_token=0.2, output_tokens=1, generation_seconds=0.1
    )
    s.record_stream(
        outcome="network", time_to_first_token=0.3, output_tokens=2, generation_seconds=0.5
    )
    streams = s.snapshot()["streams"]
    assert (
        streams["total"],
        streams["completed"],
        streams["stalled"],
        streams["cancelled"],
        streams["failed"],
    ) == (6, 3, 1, 1, 2)
    assert streams["ended_by"] == {
        "completed": 3,
        "stream_stalled": 1,
        "cancelled": 1,
        "network": 1,
    }
    ttft = streams["time_to_first_token"]
    assert ttft["count"] == 6 and ttft["min"] == 0.1 and ttft["max"] == 1.0
    rates = streams["tokens_per_second"]
    assert rates["streams_measured"] == 3  # only streams that completed say how fast a stream goes
    assert rates["overall"] == pytest.approx(140 / 4.0)
    assert rates["p50"] == pytest.approx(30.0, rel=0.02)
    assert rates["p10"] == pytest.approx(10.0, rel=0.02) and rates["p90"] == pytest.approx(
        50.0, rel=0.02
    )
    s.reset()
    assert (
        s.snapshot()["streams"]["total"] == 0
        and s.snapshot()["streams"]["tokens_per_second"]["streams_measured"] == 0
    )
