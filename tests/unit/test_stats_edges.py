"""Statistics, the whole report at once: a fixed mix of requests, attempts, rejections,
external results, batches, transitions and streams, and every figure the snapshot gives
for it; then the histogram's and the record's own contracts."""

from __future__ import annotations

import math

import pytest

from ipfs_accelerate_py.resilience.stats import (
    MAX_TRACKED_NAMES,
    OTHER,
    LatencyHistogram,
    RequestRecord,
    StatsCollector,
)


def mixed_collector() -> StatsCollector:
    sc = StatsCollector(started_at_wall=100.0)
    sc.record_request(
        RequestRecord(
            True, 0.5, 0.1, 1, "m1", None, 10, 5, key_name="k1", endpoint="chat", cost=0.002
        )
    )
    sc.record_request(
        RequestRecord(False, 1.5, 0.25, 3, "m1", "timeout", key_name="k1", endpoint="chat")
    )
    sc.record_request(RequestRecord(False, 0.25, 0.0, 2, "m2", "cancelled", 4, key_name="k2"))
    sc.record_request(RequestRecord(False, 2.0, attempts=1, endpoint="embeddings"))
    sc.record_attempt(key_name="k1", status=200, latency=0.5)
    sc.record_attempt(key_name="k1", status=429)
    sc.record_attempt(key_name="k2", error_kind="rate_limit")
    sc.record_attempt(error_kind="timeout")
    sc.record_attempt()
    sc.record_rejected("queue_full")
    sc.record_external(True)
    sc.record_external(False)
    sc.record_batch(10, 3)
    sc.record_batch(4, 2)
    sc.record_breaker_transition("CLOSED", "OPEN", 5.0)
    for outcome, first, tokens, seconds in (
        ("completed", 0.2, 10, 2.0),  # 5 tokens/s
        ("completed", 0.4, 30, 2.0),  # 15 tokens/s
        ("stream_stalled", 0.3, 4, 1.0),
        ("cancelled", 0.1, 0, 0.0),
    ):
        sc.record_stream(
            outcome=outcome,
            time_to_first_token=first,
            output_tokens=tokens,
            generation_seconds=seconds,
        )
    return sc


def test_every_figure_of_a_mixed_report():
    sc = mixed_collector()
    snap = sc.snapshot()
    latency, queue_wait, streams = snap.pop("latency"), snap.pop("queue_wait"), snap.pop("streams")
    assert snap == {
        "total_requests": 7,  # 2 successes (1 external) + 4 failures + 1 cancelled
        "successful_requests": 2,
        "failed_requests": 4,  # a timeout, an unknown, a rejection, an external failure
        "cancelled_requests": 1,
        "rejected_requests": 1,
        "external_results": 2,
        "retried_requests": 2,
        "total_retries": 3,
        "total_attempts": 7,
        "http_attempts": 5,
        "success_rate": pytest.approx(100 * 2 / 6),
        "retry_rate": pytest.approx(100 * 2 / 7),
        "errors_by_type": {"timeout": 1, "unknown": 2, "queue_full": 1},
        "models": {
            "m1": {
                "requests": 2,
                "successes": 1,
                "failures": 1,
                "cancelled": 0,
                "tokens_in": 10,
                "tokens_out": 5,
                "cost": 0.002,
                "average_response_time": 1.0,
            },
            "m2": {
                "requests": 1,
                "successes": 0,
                "failures": 0,
                "cancelled": 1,
                "tokens_in": 4,
                "tokens_out": 0,
                "cost": 0.0,
                "average_response_time": 0.25,
            },
        },
        "endpoints": {"chat": 2, "embeddings": 1},
        "keys": {
            "k1": {
                "requests": 2,
                "successes": 1,
                "failures": 1,
                "cancelled": 0,
                "attempts": 2,
                "rate_limited": 1,
                "tokens_in": 10,
                "tokens_out": 5,
                "cost": 0.002,
            },
            "k2": {
                "requests": 1,
                "successes": 0,
                "failures": 0,
                "cancelled": 1,
                "attempts": 1,
                "rate_limited": 1,
                "tokens_in": 4,
                "tokens_out": 0,
                "cost": 0.0,
            },
        },
        "attempt_status_counts": {200: 1, 429: 1, "rate_limit": 1, "timeout": 1, "network": 1},
        "tokens": {"input": 14, "output": 5, "total": 19},
        "cost": {"total": 0.002, "currency": "USD", "unpriced_models": ["m2"]},
        "batches": {
            "count": 2,
            "inputs": 14,
            "members": 5,
            "average_inputs": 7.0,
            "average_members": 2.5,
            "max_inputs": 10,
        },
        "breaker_transitions": [{"from": "CLOSED", "to": "OPEN", "at_wall": 5.0}],
        "started_at_wall": 100.0,
        "average_response_time": 1.0625,
    }
    assert {k: latency[k] for k in ("count", "mean", "min", "max", "p90", "p95", "p99")} == {
        "count": 4,
        "mean": 1.0625,
        "min": 0.25,
        "max": 2.0,
        "p90": 2.0,
        "p95": 2.0,
        "p99": 2.0,
    }
    assert latency["p50"] == pytest.approx(0.5, rel=0.01)
    assert queue_wait == {
        "count": 4,
        "mean": pytest.approx(0.0875),
        "min": 0.0,
        "max": 0.25,
        "p50": 0.0,
        "p90": 0.25,
        "p95": 0.25,
        "p99": 0.25,
    }
    first_token = streams.pop("time_to_first_token")
    assert (first_token["count"], first_token["min"], first_token["max"]) == (4, 0.1, 0.4)
    assert first_token["p50"] == pytest.approx(0.2, rel=0.01)
    assert streams == {
        "total": 4,
        "completed": 2,
        "stalled": 1,
        "cancelled": 1,
        "failed": 1,
        "ended_by": {"completed": 2, "stream_stalled": 1, "cancelled": 1},
        "tokens_per_second": {
            "overall": 10.0,  # 40 tokens in 4 s of generation
            "streams_measured": 2,
            "p10": pytest.approx(5.0, rel=0.01),  # the slow end
            "p50": pytest.approx(15.0, rel=0.01),
            "p90": pytest.approx(15.0, rel=0.01),
        },
    }
    assert repr(sc) == "StatsCollector(requests=6, failed=4)"


def test_reset_forgets_everything_and_may_start_a_new_period():
    sc = mixed_collector()
    sc.reset()
    snap = sc.snapshot()
    assert snap["total_requests"] == snap["http_attempts"] == snap["batches"]["count"] == 0
    assert snap["latency"]["count"] == snap["streams"]["time_to_first_token"]["count"] == 0
    assert snap["streams"]["tokens_per_second"]["streams_measured"] == 0
    assert (snap["keys"], snap["models"], snap["breaker_transitions"]) == ({}, {}, [])
    assert snap["started_at_wall"] == 100.0
    sc.reset(started_at_wall=200.0)
    assert sc.snapshot()["started_at_wall"] == 200.0


def test_names_past_the_cap_share_the_other_row():
    sc = StatsCollector()
    for i in range(MAX_TRACKED_NAMES + 2):
        sc.record_request(RequestRecord(True, 0.1, model=f"m{i}", key_name=f"k{i}"))
        sc.record_attempt(key_name=f"k{i}", status=200 + i)
    snap = sc.snapshot()
    # MAX_TRACKED_NAMES names of their own, then one shared row for every later name
    assert len(snap["models"]) == len(snap["keys"]) == MAX_TRACKED_NAMES + 1
    assert len(snap["attempt_status_counts"]) == MAX_TRACKED_NAMES + 1
    assert f"m{MAX_TRACKED_NAMES - 1}" in snap["models"]
    assert f"m{MAX_TRACKED_NAMES}" not in snap["models"]
    assert snap["models"][OTHER]["requests"] == 2
    assert snap["keys"][OTHER]["attempts"] == 2
    assert snap["attempt_status_counts"][OTHER] == 2


def test_histogram_figures_and_repr():
    h = LatencyHistogram()
    assert (h.count, h.total, h.min, h.max, h.mean) == (0, 0.0, 0.0, 0.0, 0.0)
    assert h.percentiles([0, 50, 100]) == [0.0, 0.0, 0.0] and h.distribution() == []
    for value in (0.001, 0.004, -1.0, math.nan, math.inf):
        h.record(value)
    assert (h.count, h.total, h.min, h.max) == (3, 0.005, 0.0, 0.004)
    assert h.mean == pytest.approx(0.005 / 3)
    assert (h.percentile(0), h.percentile(100)) == (0.0, 0.004)
    assert h.percentile(60) == pytest.approx(0.001, rel=0.01)
    assert h.bucket_count == 3
    assert repr(h) == "LatencyHistogram(count=3, buckets=3)"


@pytest.mark.parametrize("bad", [-0.1, 100.5, True, "50", None])
def test_histogram_percentile_refusal_says_the_range(bad):
    with pytest.raises(ValueError, match=r"percentile must be a number in \[0, 100\], got "):
        LatencyHistogram().percentile(bad)


def test_histogram_distribution_merges_buckets_evenly_up_to_the_bins_asked():
    h = LatencyHistogram()
    for value in (0.01, 0.0102, 0.0104, 0.5, 0.51):
        h.record(value)
    rows = h.distribution(bins=1000)
    assert [count for _, count in rows] == [1, 1, 1, 1, 1]
    assert all(a[0] < b[0] for a, b in zip(rows, rows[1:], strict=False))
    assert rows[0][0] == pytest.approx(0.01, rel=0.02) and rows[-1][0] >= 0.51
    merged = h.distribution(bins=2)
    assert [count for _, count in merged] == [3, 2]
    assert merged[-1][0] == rows[-1][0]
    assert sum(count for _, count in h.distribution(bins=1)) == 5


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("latency", -0.5, "RequestRecord.latency must be a number of seconds >= 0, got -0.5"),
        ("queue_wait", True, "RequestRecord.queue_wait must be a number of seconds >= 0, got True"),
        ("attempts", -1, "RequestRecord.attempts must be an integer >= 0, got -1"),
        ("tokens_in", 1.0, "RequestRecord.tokens_in must be an integer >= 0, got 1.0"),
        ("tokens_out", -2, "RequestRecord.tokens_out must be an integer >= 0, got -2"),
        ("queue_wait", -1.0, "RequestRecord.queue_wait must be a number of seconds >= 0, got -1.0"),
        ("tokens_in", -1, "RequestRecord.tokens_in must be an integer >= 0, got -1"),
        ("tokens_out", 2.0, "RequestRecord.tokens_out must be an integer >= 0, got 2.0"),
        ("attempts", True, "RequestRecord.attempts must be an integer >= 0, got True"),
    ],
)
def test_request_record_refusals_name_the_field(field, value, says):
    with pytest.raises(ValueError) as info:
        RequestRecord(True, **{"latency": 0.1, field: value})
    assert str(info.value) == says


def test_a_record_of_plain_ints_for_times_is_accepted():
    record = RequestRecord(True, 1, 0, 0, tokens_in=0, tokens_out=0)
    assert (record.latency, record.queue_wait, record.attempts) == (1, 0, 0)


def test_reset_also_empties_the_queue_wait_and_per_token_histograms():
    sc = mixed_collector()
    sc.reset()
    assert sc.queue_wait.count == sc.time_per_token.count == sc.time_to_first_token.count == 0


def test_an_empty_report_has_no_rate():
    streams = StatsCollector().snapshot()["streams"]
    assert streams["tokens_per_second"] == {"overall": 0.0, "streams_measured": 0}


def test_rate_percentiles_of_ten_streams():
    sc = StatsCollector()
    for rate in range(1, 11):  # 1 to 10 tokens a second, 10 tokens each
        sc.record_stream(
            outcome="completed",
            time_to_first_token=0.1,
            output_tokens=10,
            generation_seconds=10 / rate,
        )
    rates = sc.snapshot()["streams"]["tokens_per_second"]
    # nearest rank over the times per token, inverted: the 9th, 5th and 1st fastest
    assert rates["p10"] == pytest.approx(2.0, rel=0.01)
    assert rates["p50"] == pytest.approx(6.0, rel=0.01)
    assert rates["p90"] == pytest.approx(10.0, rel=0.01)


def test_an_external_failure_is_counted_by_its_kind():
    sc = StatsCollector()
    sc.record_external(False, "authentication")
    sc.record_rejected("")
    assert sc.snapshot()["errors_by_type"] == {"authentication": 1, "unknown": 1}


def test_breaker_history_keeps_the_last_fifty_transitions():
    sc = StatsCollector()
    for i in range(60):
        sc.record_breaker_transition("CLOSED", "OPEN", float(i))
    history = sc.snapshot()["breaker_transitions"]
    assert len(history) == 50 and history[0]["at_wall"] == 10.0


def test_the_hundredth_percentile_is_the_maximum_exactly():
    h = LatencyHistogram()
    edge = 1e-5 * 1.02**300  # the top edge of a bucket: its representative is below it
    h.record(edge / 2)
    h.record(edge)
    assert h.percentile(100) == edge
    assert h.percentile(99) == pytest.approx(edge, rel=0.01)


def test_a_value_just_over_an_hour_is_reported_as_the_maximum():
    h = LatencyHistogram()
    h.record(1.0)
    h.record(3650.0)
    assert h.percentile(99) == 3650.0


def test_distribution_rows_are_bucket_upper_edges():
    h = LatencyHistogram()
    values = (0.01, 0.0102, 0.0104, 0.5, 0.51)
    for value in values:
        h.record(value)
    for (upper, _), value in zip(h.distribution(bins=1000), values, strict=True):
        assert value <= upper < value * 1.02


def test_distribution_gives_at_most_forty_rows_by_default():
    h = LatencyHistogram()
    for k in range(1, 82):  # 81 adjacent buckets
        h.record(1e-5 * 1.02**k * 0.999)
    rows = h.distribution()
    assert len(rows) <= 40 and sum(count for _, count in rows) == 81


@pytest.mark.parametrize("bins", [1, 0])
def test_distribution_in_one_bin_is_one_row_counting_everything(bins):
    h = LatencyHistogram()
    for value in (0.01, 0.0102, 0.5, 2.0):
        h.record(value)
    [(upper, count)] = h.distribution(bins=bins)
    assert count == 4 and 2.0 <= upper < 2.0 * 1.02


def test_a_value_just_above_the_smallest_bucket_is_reported_within_a_percent():
    h = LatencyHistogram()
    h.record(1.01e-5)
    h.record(1e-3)
    assert h.percentile(50) == pytest.approx(1.01e-5, rel=0.005)


@pytest.mark.parametrize(
    "fields",
    [
        (True, 0.5, 0.1, 1, "m", None, 3, 4, "k", "chat/completions"),
        (False, 0.25, 0.0, 3, "m2", "server", 0, 0, None, None),
        (False, 0.75, 0.2, 1, None, "cancelled", 0, 0, "k2", "embeddings"),
        (True, 1, 0, 2, "m", None, 1, 1, "k", None),  # ints for seconds: the record's own check
    ],
)
def test_record_figures_counts_exactly_what_record_request_counts(fields):
    by_record, by_figures = StatsCollector(), StatsCollector()
    by_record.record_request(RequestRecord(*fields))
    by_figures.record_figures(*fields)
    assert by_figures.snapshot() == by_record.snapshot()


FIGURES = {"latency": 1, "queue_wait": 2, "attempts": 3, "tokens_in": 6, "tokens_out": 7}


@pytest.mark.parametrize(
    "name, value",
    [
        ("latency", -0.5), ("latency", float("nan")), ("queue_wait", -0.5),
        ("attempts", -1), ("attempts", True), ("tokens_in", -1), ("tokens_out", -1),
    ],
)  # fmt: skip
def test_record_figures_refuses_what_a_record_refuses_and_counts_nothing(name, value):
    stats = StatsCollector()
    fields = [True, 0.5, 0.0, 1, "m", None, 0, 0, "k", None]
    fields[FIGURES[name]] = value
    with pytest.raises(ValueError, match=f"RequestRecord.{name} must be"):
        stats.record_figures(*fields)
    assert stats.snapshot()["total_requests"] == 0


def test_a_completed_stream_without_output_tokens_has_no_rate():
    sc = StatsCollector()
    sc.record_stream(
        outcome="completed", time_to_first_token=0.1, output_tokens=0, generation_seconds=1.0
    )
    streams = sc.snapshot()["streams"]
    assert streams["completed"] == streams["total"] == 1
    assert sc.time_per_token.count == 0


def test_streams_that_all_failed_have_none_completed():
    sc = StatsCollector()
    sc.record_stream(
        outcome="stream_stalled", time_to_first_token=0.1, output_tokens=3, generation_seconds=1.0
    )
    streams = sc.snapshot()["streams"]
    assert streams["completed"] == 0 and streams["failed"] == streams["total"] == 1


def test_the_median_rate_of_a_hundred_streams_is_the_fiftieth():
    sc = StatsCollector()
    for rate in range(1, 101):  # 1 to 100 tokens a second
        sc.record_stream(
            outcome="completed", time_to_first_token=0.1, output_tokens=100,
            generation_seconds=100 / rate,
        )  # fmt: skip
    rates = sc.snapshot()["streams"]["tokens_per_second"]
    # nearest rank over the times per token, inverted: rank 50 of the slowest first is 51 tokens/s
    assert rates["p50"] == pytest.approx(51.0, rel=0.01)
    assert rates["p10"] == pytest.approx(11.0, rel=0.01)
