"""The run report's plots: the data behind them and the SVG charts drawn from it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipfs_accelerate_py.runner.plots import (
    LONE_BUCKET_RATIO,
    MAX_BARS,
    MAX_TIMELINE_POINTS,
    PLOT_TITLES,
    downsample_timeline,
    errors_svg,
    keys_svg,
    latency_bars,
    latency_svg,
    throughput_svg,
)

# ---------------------------------------------------------------- plot data


@pytest.mark.parametrize(
    "timeline, width, length",
    [
        ([], 1, 0),
        ([[0, 5]], 1, 1),
        ([[second, 1] for second in range(600)], 1, 600),
        ([[second, 1] for second in range(601)], 2, 301),
        ([[second, 3] for second in range(10_000)], 17, 589),
        ([[3, 2], [7, 9]], 1, 8),  # gaps become zero-count buckets
        ([[0, 1], [99_999, 1]], 167, 599),
    ],
)
def test_downsample_timeline(timeline, width, length):
    got_width, points = downsample_timeline(timeline)
    assert (got_width, len(points)) == (width, length)
    assert sum(count for _, count in points) == sum(count for _, count in timeline)
    assert [start for start, _ in points] == [i * width for i in range(length)]


@given(
    st.dictionaries(st.integers(0, 50_000), st.integers(0, 1_000), max_size=200),
    st.integers(1, 1_000),
)
def test_downsampling_keeps_the_total_and_the_bound(counts, max_points):
    timeline = sorted([second, count] for second, count in counts.items())
    width, points = downsample_timeline(timeline, max_points)
    assert len(points) <= max_points
    assert sum(count for _, count in points) == sum(counts.values())
    for second, _count in timeline:
        assert points[second // width][0] <= second < points[second // width][0] + width


def test_downsample_refuses_a_zero_bound():
    with pytest.raises(ValueError, match="max_points"):
        downsample_timeline([[0, 1]], 0)


LONE = 10**0.2


def test_a_lone_bucket_is_a_fifth_of_a_decade():
    assert pytest.approx(LONE) == LONE_BUCKET_RATIO


@pytest.mark.parametrize(
    "histogram, expected",
    [
        ([], []),
        ([[0.1, 0], [0.2, 0]], []),
        ([[0.1, 4]], [(0.1 / LONE, 0.1, 4)]),
        ([[0.1, 4], [0.1, 1]], [(0.1 / LONE, 0.1, 5)]),
        (
            [[0.001, 1], [0.002, 2], [0.004, 3]],
            [(0.0005, 0.001, 1), (0.001, 0.002, 2), (0.002, 0.004, 3)],
        ),
        ([[0.001, 0], [0.002, 5]], [(0.001, 0.002, 5)]),
        (
            [[0.008, 3], [0.001, 1], [0.002, 2]],
            [(0.0005, 0.001, 1), (0.001, 0.002, 2), (0.004, 0.008, 3)],
        ),
        (
            [[0.001, 1], [0.002, 1], [0.005, 1]],
            [(0.0005, 0.001, 1), (0.001, 0.002, 1), (0.002, 0.005, 1)],
        ),
        (
            [[0.001, 1], [0.002, 1], [0.006, 1]],
            [(0.0005, 0.001, 1), (0.001, 0.002, 1), (0.003, 0.006, 1)],
        ),
        (
            [[0.001, 1], [0.002, 2], [0.003, 3]],
            [(0.001 / 1.5, 0.001, 1), (0.002 / 1.5, 0.002, 2), (0.002, 0.003, 3)],
        ),
        ([[0.0, 2]], [(1e-6 / LONE, 1e-6, 2)]),
    ],
)
def test_latency_bars_table(histogram, expected):
    bars = latency_bars(histogram)
    assert [count for _, _, count in bars] == [count for _, _, count in expected]
    assert [bar[:2] for bar in bars] == [pytest.approx(want[:2]) for want in expected]


@pytest.mark.parametrize("rows", [61, 500, 1000])
def test_a_fine_histogram_is_merged_into_runs_of_neighbours(rows):
    gamma = 1.02  # the statistics' own buckets
    histogram = [[1e-5 * gamma**i, 1 + i % 3] for i in range(200, 200 + rows)]
    bars = latency_bars(histogram, max_bars=60)
    assert len(bars) <= 60
    assert sum(count for _, _, count in bars) == sum(count for _, count in histogram)
    widths = {round(high / low, 9) for low, high, _ in bars}
    assert len(widths) == 1 and widths.pop() > gamma  # equal on the log scale, several rows each
    for (_, high, _), (next_low, _, _) in zip(bars, bars[1:], strict=False):
        assert next_low == pytest.approx(high)
    for upper, count in histogram:
        if count:
            assert (
                sum(
                    low < upper * (1 - 1e-9) and upper <= high * (1 + 1e-9) for low, high, _ in bars
                )
                == 1
            )


# ---------------------------------------------------------------- the SVG charts


@pytest.mark.parametrize(
    "draw, empty",
    [
        (latency_svg, []),
        (latency_svg, [[0.1, 0], [0.2, 0]]),
        (throughput_svg, []),
        (throughput_svg, [[0, 0], [5, 0]]),
        (errors_svg, {}),
        (errors_svg, {"ServerError": 0}),
        (keys_svg, {}),
        (keys_svg, {"key1": {"requests": 0, "failures": 0, "rate_limited": 0}}),
    ],
)
def test_a_chart_with_nothing_to_draw_is_none(draw, empty):
    assert draw(empty) is None


@pytest.mark.parametrize(
    "draw, data, plot",
    [
        (latency_svg, [[0.1, 3]], "latency"),
        (throughput_svg, [[0, 3]], "throughput"),
        (errors_svg, {"ServerError": 1}, "errors"),
        (keys_svg, {"only": {"requests": 1, "failures": 0, "rate_limited": 0}}, "keys"),
    ],
)
def test_a_chart_is_one_titled_svg_element(draw, data, plot):
    svg = draw(data)
    assert svg.startswith("<svg ") and svg.endswith("</svg>") and svg.count("<svg") == 1
    assert f"<title>{PLOT_TITLES[plot]}</title>" in svg


def test_latency_ticks_are_in_ms_and_s():
    histogram = [[0.001 * 10 ** (i / 10), 1000] for i in range(31)]  # 1 ms to 1 s
    svg = latency_svg(histogram)
    ticks = re.findall(r'text-anchor="middle">([^<]+)</text>', svg)
    assert ticks == ["1 ms", "10 ms", "100 ms", "1 s"]
    counts = re.findall(r'text-anchor="end">([^<]+)</text>', svg)
    assert counts[0] == "0" and len(counts) >= 3
    assert all(re.fullmatch(r"\d{1,3}(,\d{3})*", label) for label in counts), counts
    assert "latency (log scale)" in svg and ">requests</text>" in svg


@pytest.mark.parametrize(
    "low, high, expected",
    [
        (0.0008, 1.0, ["1 ms", "10 ms", "100 ms", "1 s"]),
        (0.012, 3.0, ["20 ms", "50 ms", "100 ms", "200 ms", "500 ms", "1 s", "2 s"]),
        (0.0008, 0.003, ["1 ms", "1.5 ms", "2 ms", "3 ms"]),
        (0.0011, 0.0013, ["1.1 ms", "1.3 ms"]),  # no round value inside: the two ends
        (5e-5, 2e-3, ["50 µs", "100 µs", "200 µs", "500 µs", "1 ms", "2 ms"]),
    ],
)
def test_latency_axis_ticks(low, high, expected):
    ratio = (high / low) ** (
        1 / 50
    )  # 51 evenly spaced rows: the axis runs from low / ratio to high
    histogram = [[low * ratio**i, 1] for i in range(51)]
    ticks = re.findall(r'text-anchor="middle">([^<]+)</text>', latency_svg(histogram))
    assert ticks == expected


def test_a_long_timeline_is_drawn_in_few_points():
    svg = throughput_svg([[second, 20] for second in range(10_000)])
    points = re.search(r'<polygon points="([^"]+)"', svg).group(1).split()
    assert len(points) <= 2 * MAX_TIMELINE_POINTS + 2
    assert "time since start (min)" in svg and "mean over 17 s" in svg
    # a constant 20 per second stays 20 per second, also in the last, shorter bucket
    heights = {float(point.split(",")[1]) for point in points[1:-1]}
    assert len(heights) == 1


def test_many_error_classes_fold_into_one_row():
    svg = errors_svg({f"Error{n:03d}": n + 1 for n in range(MAX_BARS + 10)})
    assert svg.count("<rect") == MAX_BARS
    assert "other (11)" in svg
    assert "Error034" in svg and "Error000" not in svg  # the largest are shown by name
