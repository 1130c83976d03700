"""Statistics' cheap paths change no figure: a combination's tally, an attempt's
tally and the durations a histogram holds before bucketing them give, at every
read, exactly what counting each record in full gives (the same numbers, floats
summed in the same order, names in the same order), in bounded memory, across
threads."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfs_accelerate_py.resilience import stats as stats_module
from ipfs_accelerate_py.resilience.stats import (
    HISTOGRAM_GAMMA,
    HISTOGRAM_MAX_SECONDS,
    HISTOGRAM_MIN_SECONDS,
    PENDING_MAX,
    LatencyHistogram,
    RequestRecord,
    StatsCollector,
)

from ..helpers import beside


@contextmanager
def one_by_one(max_tallies: int = 0, pending_max: int = 1) -> Iterator[None]:
    """No tally is started, and each duration is bucketed when recorded."""
    saved = stats_module.MAX_TALLIES, stats_module.PENDING_MAX
    stats_module.MAX_TALLIES, stats_module.PENDING_MAX = max_tallies, pending_max
    try:
        yield
    finally:
        stats_module.MAX_TALLIES, stats_module.PENDING_MAX = saved


def figures_of(*, success=True, latency=0.5, attempts=1, model="m", key="k", endpoint="chat"):
    return (
        success,
        latency,
        0.25,
        attempts,
        model,
        None if success else "server",
        3,
        4,
        key,
        endpoint,
        0.125,
    )


fields = st.tuples(
    st.booleans(),
    st.one_of(st.floats(0.0, 5000.0), st.just(math.inf), st.integers(0, 3)),
    st.one_of(st.floats(0.0, 10.0), st.just(0.0)),
    st.sampled_from([0, 1, 1, 1, 2]),
    st.sampled_from([None, "a", "b"]),
    st.sampled_from([None, "server", "cancelled"]),
    st.integers(0, 50),
    st.integers(0, 50),
    st.sampled_from([None, "k1", "k2"]),
    st.sampled_from([None, "chat", "embeddings"]),
    # dollars exact in binary: a tally's sum equals the sum one by one, in any order
    st.sampled_from([None, 0.0, 0.25, 1.5]),
)
events = st.lists(
    st.one_of(
        st.tuples(st.just("figures"), fields),
        st.tuples(st.just("request"), fields),
        st.tuples(
            st.just("attempt"),
            st.tuples(
                st.sampled_from([None, "k1", "k2"]),
                st.sampled_from([None, 200, 429, 500]),
                st.sampled_from([None, "timeout", "rate_limit"]),
            ),
        ),
        st.tuples(st.just("read"), st.just(())),
        st.tuples(st.just("stream"), st.floats(0.0, 10.0)),
    ),
    max_size=40,
)


def apply(stats: StatsCollector, kind: str, args) -> str | None:
    if kind == "figures":
        stats.record_figures(*args)
    elif kind == "request":
        stats.record_request(RequestRecord(*args))
    elif kind == "attempt":
        key_name, status, error_kind = args
        stats.record_attempt(key_name=key_name, status=status, error_kind=error_kind)
    elif kind == "stream":
        stats.record_stream(
            outcome="completed", time_to_first_token=args, output_tokens=2, generation_seconds=1.0
        )
    else:
        return repr(stats.snapshot())
    return None


@settings(max_examples=300, deadline=None)
@given(events, st.sampled_from([1, 2, 1000]), st.sampled_from([1, 3, PENDING_MAX]))
def test_every_read_gives_what_counting_each_record_in_full_gives(events, tallies, pending):
    cheap, full = StatsCollector(), StatsCollector()
    for kind, args in events:
        with one_by_one(tallies, pending):
            seen = apply(cheap, kind, args)
        with one_by_one():
            expected = apply(full, kind, args)
        assert seen == expected
    with one_by_one(tallies, pending):
        seen = repr(cheap.snapshot()), repr(cheap)
    assert seen == (repr(full.snapshot()), repr(full))


def test_a_combination_seen_again_is_counted_in_full_with_its_names_in_order():
    stats = StatsCollector()
    for model, key, endpoint in [("m1", "k1", "chat"), ("m2", None, None), ("m1", "k1", "chat")]:
        stats.record_figures(*figures_of(model=model, key=key, endpoint=endpoint))
        stats.record_attempt(key_name=key, status=200)
    stats.record_figures(*figures_of(latency=1.5))
    snap = stats.snapshot()
    assert snap["successful_requests"] == snap["total_attempts"] == 4
    assert snap["tokens"] == {"input": 12, "output": 16, "total": 28}
    assert list(snap["models"]) == ["m1", "m2", "m"]
    assert snap["models"]["m1"] == {
        "requests": 2, "successes": 2, "failures": 0, "cancelled": 0,
        "tokens_in": 6, "tokens_out": 8, "cost": 0.25, "average_response_time": 0.5,
    }  # fmt: skip
    assert snap["keys"]["k1"]["requests"] == snap["keys"]["k1"]["attempts"] == 2
    assert snap["endpoints"] == {"chat": 3}
    assert snap["http_attempts"] == 3 and snap["attempt_status_counts"] == {200: 3}
    assert snap["latency"]["count"] == snap["queue_wait"]["count"] == 4
    assert snap["latency"]["max"] == 1.5


def test_tallies_start_again_from_zero_after_a_read_and_after_a_reset():
    stats = StatsCollector()
    for _ in range(3):
        stats.record_figures(*figures_of())
        stats.record_attempt(key_name="k", status=429)
    assert stats.snapshot()["successful_requests"] == 3
    assert stats.snapshot()["keys"]["k"]["rate_limited"] == 3  # a second read adds nothing
    stats.record_figures(*figures_of())
    stats.record_attempt(key_name="k", status=429)
    snap = stats.snapshot()
    assert snap["successful_requests"] == 4 and snap["keys"]["k"]["rate_limited"] == 4
    stats.record_figures(*figures_of())
    stats.reset()
    stats.record_figures(*figures_of(model="n"))
    snap = stats.snapshot()
    assert snap["total_requests"] == 1 and list(snap["models"]) == ["n"]
    assert "StatsCollector(requests=1," in repr(stats)


def test_a_collectors_memory_stays_bounded():
    stats = StatsCollector()
    for i in range(stats_module.MAX_TALLIES + 10):
        stats.record_figures(*figures_of(endpoint=f"e{i}"))
        stats.record_attempt(key_name="k", status=i)
    assert len(stats._tallies) == len(stats._attempt_tallies) == stats_module.MAX_TALLIES
    for _ in range(3 * PENDING_MAX):
        stats.record_figures(*figures_of())
    assert len(stats.latency._pending) < PENDING_MAX
    assert len(stats.queue_wait._pending) < PENDING_MAX
    snap = stats.snapshot()
    assert (
        snap["total_requests"]
        == snap["latency"]["count"]
        == stats_module.MAX_TALLIES + 10 + 3 * PENDING_MAX
    )
    assert snap["http_attempts"] == stats_module.MAX_TALLIES + 10


@pytest.mark.parametrize("read_latency", [False, True])
def test_a_tallied_combination_buckets_each_list_when_it_fills(read_latency):
    stats = StatsCollector()
    stats.record_figures(*figures_of())  # the combination's tally starts
    stats.settle()
    for n in range(1, 2 * PENDING_MAX + 2):
        stats.record_figures(*figures_of())
        if read_latency:  # a read buckets the latencies: the waits fill on their own
            assert stats.latency.count == n + 1
        assert len(stats.queue_wait._pending) == n % PENDING_MAX
        assert len(stats.latency._pending) == (0 if read_latency else n % PENDING_MAX)
    assert stats.snapshot()["queue_wait"]["count"] == 2 * PENDING_MAX + 2


def test_settling_lets_go_of_the_buffers_and_changes_no_figure():
    settled, read = StatsCollector(started_at_wall=0.0), StatsCollector(started_at_wall=0.0)
    for i in range(PENDING_MAX // 2):
        for stats in (settled, read):
            stats.record_figures(*figures_of(latency=0.001 * (i + 1), key=f"k{i % 3}"))
    settled.settle()
    for histogram in settled._histograms():
        assert histogram._pending == []
    assert all(tally[0] == 0 for tally in settled._tallies.values())
    assert settled.snapshot() == read.snapshot()


def test_a_histogram_holds_fewer_than_pending_max_durations_unbucketed():
    h = LatencyHistogram()
    for i in range(PENDING_MAX - 1):
        h.record(0.001 * i)
    assert len(h._pending) == PENDING_MAX - 1
    h.record(1.0)
    assert not h._pending and h._count == PENDING_MAX
    assert h.total == sum(0.001 * i for i in range(PENDING_MAX - 1)) + 1.0


def reference_bucket(seconds: float) -> int:
    """The bucket of one duration, by the definition."""
    if seconds <= HISTOGRAM_MIN_SECONDS:
        return 0
    top = (
        math.ceil(
            math.log(HISTOGRAM_MAX_SECONDS / HISTOGRAM_MIN_SECONDS) / math.log(HISTOGRAM_GAMMA)
        )
        + 1
    )
    index = math.ceil(math.log(seconds / HISTOGRAM_MIN_SECONDS) / math.log(HISTOGRAM_GAMMA))
    return min(max(index, 1), top)


def around_every_edge() -> list[float]:
    values = [0.0, 5e-324, HISTOGRAM_MAX_SECONDS, 4000.0, 1e9]
    for index in range(1001):
        edge = HISTOGRAM_MIN_SECONDS * HISTOGRAM_GAMMA**index
        below = above = edge
        values.append(edge)
        for _ in range(3):
            below, above = math.nextafter(below, 0.0), math.nextafter(above, math.inf)
            values += [below, above]
    return values


@pytest.mark.parametrize("read_every", [1, 7, None])
def test_durations_at_every_bucket_edge_land_where_the_definition_puts_them(read_every):
    h = LatencyHistogram()
    expected: dict[int, int] = {}
    for n, seconds in enumerate(around_every_edge(), 1):
        h.record(seconds)
        index = reference_bucket(seconds)
        expected[index] = expected.get(index, 0) + 1
        if read_every and n % read_every == 0:
            assert h.count == n
    rows = h.distribution(bins=10_000)
    assert [count for _, count in rows] == [expected[i] for i in sorted(expected)]
    assert rows[-1][0] == HISTOGRAM_MIN_SECONDS * HISTOGRAM_GAMMA ** max(expected)


def test_an_infinite_latency_is_counted_as_a_request_and_left_out_of_the_histogram():
    stats = StatsCollector()
    for latency in (0.5, math.inf, math.inf):
        stats.record_figures(*figures_of(latency=latency))
    snap = stats.snapshot()
    assert snap["total_requests"] == 3 and snap["latency"]["count"] == 1
    assert (
        snap["latency"]["max"] == 0.5 and snap["models"]["m"]["average_response_time"] == math.inf
    )
    assert snap["queue_wait"]["count"] == 3
    h = LatencyHistogram()
    h._pending.append(math.inf)  # only the collector's own path leaves one there
    assert h.count == 0 and h.snapshot()["max"] == 0.0


def test_reads_from_other_threads_while_the_loop_records(frequent_thread_switches):
    stats = StatsCollector()
    per_writer, writers = 3000, 2
    done = threading.Event()
    reads = []

    def write(w: int) -> None:
        for i in range(per_writer):
            stats.record_attempt(key_name=f"k{w}", status=200)
            stats.record_figures(*figures_of(latency=0.001 * (i % 40 + 1), key=f"k{w}"))

    def read() -> None:
        while not done.is_set():
            reads.append(stats.latency.count + stats.queue_wait.count)
            snap = stats.snapshot()
            assert snap["latency"]["count"] == snap["successful_requests"]

    beside(read, [lambda w=w: write(w) for w in range(writers)], done)
    snap = stats.snapshot()
    total = writers * per_writer
    assert snap["successful_requests"] == snap["latency"]["count"] == snap["http_attempts"] == total
    assert snap["tokens"]["input"] == 3 * total
    assert all(snap["keys"][f"k{w}"]["attempts"] == per_writer for w in range(writers))
    assert snap["models"]["m"]["requests"] == total
    assert any(0 < r < 2 * total for r in reads)  # some reads came while the writers wrote
    assert reads == sorted(reads)


@pytest.mark.parametrize(
    "read, expected",
    [
        (lambda h: h.count, 2),
        (lambda h: h.total, 2.5),
        (lambda h: h.min, 0.5),
        (lambda h: h.max, 2.0),
        (lambda h: h.mean, 1.25),
        (lambda h: h.bucket_count, 2),
        (lambda h: h.percentile(100), 2.0),
        (lambda h: len(h.distribution()), 2),
        (lambda h: h.snapshot()["max"], 2.0),
        (repr, "LatencyHistogram(count=2, buckets=2)"),
    ],
)
def test_every_read_of_a_histogram_counts_the_durations_still_waiting(read, expected):
    h = LatencyHistogram()
    h.record(0.5)
    h.record(2.0)
    assert read(h) == expected


def test_plain_figures_are_counted_without_building_a_record(monkeypatch):
    built = []

    class Counted(RequestRecord):
        def __post_init__(self) -> None:
            built.append(self)
            super().__post_init__()

    monkeypatch.setattr(stats_module, "RequestRecord", Counted)
    stats = StatsCollector()
    stats.record_figures(True, 0.0, 0.0, 0, "m", None, 0, 0, "k", "chat")  # zeros: the edge
    stats.record_figures(*figures_of())
    stats.record_figures(*figures_of())
    assert built == []
    stats.record_figures(True, 1, 0.0, 1, "m", None, 0, 0, "k", "chat")  # an int: checked in full
    assert len(built) == 1 and stats.snapshot()["total_requests"] == 4


def test_a_retried_success_of_a_tallied_combination_is_counted_in_full():
    stats = StatsCollector()
    stats.record_figures(*figures_of())
    stats.record_figures(*figures_of(attempts=2))
    stats.record_figures(*figures_of(attempts=0))
    stats.record_figures(*figures_of(success=False))
    snap = stats.snapshot()
    assert snap["total_attempts"] == 4 and snap["retried_requests"] == snap["total_retries"] == 1
    assert snap["successful_requests"] == 3 and snap["failed_requests"] == 1


def test_every_figure_of_a_tally_starts_again_from_zero_after_a_read():
    stats = StatsCollector()
    for _ in range(2):
        stats.record_figures(*figures_of())
        stats.record_attempt(key_name="k", status=200)
    first = stats.snapshot()
    assert first == stats.snapshot()
    assert first["tokens"] == {"input": 6, "output": 8, "total": 14}
    assert first["models"]["m"]["tokens_out"] == first["keys"]["k"]["tokens_out"] == 8
    stats.record_figures(*figures_of())
    second = stats.snapshot()
    assert second["tokens"] == {"input": 9, "output": 12, "total": 21}
    assert second["models"]["m"]["tokens_in"] == 9 and second["keys"]["k"]["tokens_out"] == 12


def test_the_collectors_repr_counts_the_tallies_in():
    stats = StatsCollector()
    for _ in range(3):
        stats.record_figures(*figures_of())
    assert repr(stats) == "StatsCollector(requests=3, failed=0)"
