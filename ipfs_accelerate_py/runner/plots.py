"""Inline SVG charts for the run report: stdlib only, no script, no external resource.

Each chart function takes one part of a built report (see
:func:`~ipfs_accelerate_py.runner.report.build_report`) and returns one
``<svg>`` element as a string, or ``None`` when there is nothing to draw:

- :func:`latency_svg`: the latency histogram as bars on a log-scale axis
  (:func:`latency_bars`);
- :func:`throughput_svg`: completions per second over the run, a long
  timeline summed into at most :data:`MAX_TIMELINE_POINTS` buckets
  (:func:`downsample_timeline`);
- :func:`errors_svg`: failed requests per error class, largest first;
- :func:`keys_svg`: requests, failures and rate-limited answers per key.

The two horizontal bar charts show at most :data:`MAX_BARS` rows, the rest
summed into one "other" row.  Every string that comes from the data is
escaped; each chart carries its :data:`PLOT_TITLES` entry as its title.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GAP_STEPS",
    "LATENCY_FLOOR_S",
    "LONE_BUCKET_RATIO",
    "MAX_BARS",
    "MAX_LATENCY_BARS",
    "MAX_TIMELINE_POINTS",
    "PLOT_TITLES",
    "downsample_timeline",
    "errors_svg",
    "format_seconds",
    "keys_svg",
    "latency_bars",
    "latency_svg",
    "throughput_svg",
]

MAX_TIMELINE_POINTS = 600  # the throughput plot sums a longer timeline into this many buckets
MAX_BARS = 25  # rows of a horizontal bar chart; the rest are summed into one "other" row
MAX_LATENCY_BARS = 60  # more histogram rows than this are merged in runs of neighbours
LATENCY_FLOOR_S = 1e-6  # a bucket bound at or below 0 counts as 1 µs
LONE_BUCKET_RATIO = 10**0.2  # a histogram of one row is drawn this wide (a fifth of a decade)
MIN_BUCKET_RATIO = 1.0001  # bounds nearer than this (rounding noise) do not set the bucket width
GAP_STEPS = 1.5  # a step between two histogram bounds this many times the smallest one is a gap
LOG_TICK_MANTISSAS = ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7))
MAX_LABEL_CHARS = 32
PLOT_WIDTH = 720
PLOT_HEIGHT = 240
AXIS, GRID = "#333", "#e5e5e5"
COLORS = {"bar": "#4e79a7", "failures": "#e15759", "rate_limited": "#f28e2b", "fill": "#c6d6ea"}
PLOT_TITLES = {
    "latency": "Latency distribution",
    "throughput": "Throughput over time",
    "errors": "Errors by class",
    "keys": "Load per key",
}


# ---------------------------------------------------------------- data for the plots


def downsample_timeline(
    timeline: Sequence[Sequence[int]], max_points: int = MAX_TIMELINE_POINTS
) -> tuple[int, list[list[int]]]:
    """Sum a ``[second, completions]`` timeline into buckets of whole seconds.

    Returns ``(width, points)``: each bucket is ``width`` seconds, the smallest
    width giving at most ``max_points`` buckets; ``points`` runs without gaps
    from second 0 to the last second present, each ``[first second of the
    bucket, completions in it]``, so its counts sum to the timeline's.  An
    empty timeline gives ``(1, [])``.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points!r}")
    if not timeline:
        return 1, []
    span = max(int(second) for second, _ in timeline) + 1
    width = max(1, math.ceil(span / max_points))
    counts = [0] * math.ceil(span / width)
    for second, count in timeline:
        counts[int(second) // width] += count
    return width, [[i * width, count] for i, count in enumerate(counts)]


def latency_bars(
    histogram: Sequence[Sequence[float]], max_bars: int = MAX_LATENCY_BARS
) -> list[tuple[float, float, int]]:
    """The bars ``(low s, high s, count)`` of a ``[upper bound s, count]`` histogram, ascending.

    A row covers up to its bound from the previous row's bound, unless the
    step between them is :data:`GAP_STEPS` times the smallest step between
    two bounds or more (on the log scale): then rows were left out for being
    empty, and the row covers one smallest step, as does the first row (a
    lone row is :data:`LONE_BUCKET_RATIO` wide).  Rows with no count give no
    bar, equal bounds are merged, a bound at or below 0 counts as
    :data:`LATENCY_FLOOR_S`.  When there would be more than ``max_bars``
    bars, whole runs of neighbouring rows on the smallest step's grid are
    merged.
    """
    counts: dict[float, int] = {}
    for upper, count in histogram:
        bound = max(upper, LATENCY_FLOOR_S)
        counts[bound] = counts.get(bound, 0) + int(count)
    bounds = sorted(counts)
    steps = [b / a for a, b in zip(bounds, bounds[1:], strict=False) if b / a > MIN_BUCKET_RATIO]
    ratio = min(steps, default=LONE_BUCKET_RATIO)
    bars, previous = [], 0.0
    for bound in bounds:
        contiguous = previous and math.log(bound / previous) < GAP_STEPS * math.log(ratio)
        if counts[bound]:
            bars.append((previous if contiguous else bound / ratio, bound, counts[bound]))
        previous = bound
    return bars if len(bars) <= max_bars else _merged_bars(bars, ratio, max_bars)


def _merged_bars(
    bars: list[tuple[float, float, int]], ratio: float, max_bars: int
) -> list[tuple[float, float, int]]:
    """Bars on the grid ``first * ratio**i``, ``width`` grid steps each, at most ``max_bars``."""
    first, step = bars[0][1], math.log(ratio)
    index = [round(math.log(high / first) / step) for _, high, _ in bars]
    width = math.ceil((index[-1] + 1) / max_bars)
    groups: dict[int, int] = {}
    for i, (_, _, count) in zip(index, bars, strict=False):
        groups[i // width] = groups.get(i // width, 0) + count
    return [
        (first * ratio ** (g * width - 1), first * ratio ** (g * width + width - 1), count)
        for g, count in sorted(groups.items())
    ]


# ---------------------------------------------------------------- SVG plots


@dataclass(frozen=True)
class _Frame:
    """The plotting area in pixels and the data ranges it shows (both from 0)."""

    left: float
    top: float
    width: float
    height: float
    x_max: float
    y_max: float

    def x(self, value: float) -> float:
        return self.left + self.width * value / self.x_max

    def y(self, value: float) -> float:
        return self.top + self.height * (1 - value / self.y_max)


def _svg(title: str, height: float, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {PLOT_WIDTH} {height:.0f}" '
        f'width="{PLOT_WIDTH}" height="{height:.0f}" font-size="12" font-family="system-ui, sans-serif" '
        f'role="img" aria-label="{_e(title)}">'
        f"<title>{_e(title)}</title>\n" + "\n".join(parts) + "\n</svg>"
    )


def _x_axis(
    frame: _Frame, ticks: list[tuple[float, str]], label: str, grid: bool = False
) -> list[str]:
    bottom = frame.top + frame.height
    parts = [_line(frame.left, bottom, frame.left + frame.width, bottom)]
    for value, text in ticks:
        x = frame.x(value)
        if grid:
            parts.append(_line(x, frame.top, x, bottom, GRID))
        parts.append(_line(x, bottom, x, bottom + 4))
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 17:.1f}" text-anchor="middle">{_e(text)}</text>'
        )
    middle = frame.left + frame.width / 2
    parts.append(
        f'<text x="{middle:.1f}" y="{bottom + 36:.1f}" text-anchor="middle" fill="#555">{_e(label)}</text>'
    )
    return parts


def _y_axis(frame: _Frame, ticks: list[tuple[float, str]], label: str) -> list[str]:
    right = frame.left + frame.width
    parts = [_line(frame.left, frame.top, frame.left, frame.top + frame.height)]
    for value, text in ticks:
        y = frame.y(value)
        parts.append(_line(frame.left, y, right, y, GRID))
        parts.append(
            f'<text x="{frame.left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end">{_e(text)}</text>'
        )
    middle = frame.top + frame.height / 2
    rotate = f'transform="rotate(-90 14 {middle:.1f})"'
    parts.append(
        f'<text x="14" y="{middle:.1f}" text-anchor="middle" fill="#555" {rotate}>{_e(label)}</text>'
    )
    return parts


def _vertical_frame(x_max: float, y_top: float, integer: bool) -> tuple[_Frame, list[float]]:
    y_ticks = _nice_ticks(y_top, integer)
    left, top, right, bottom = 72, 12, 20, 48
    frame = _Frame(
        left, top, PLOT_WIDTH - left - right, PLOT_HEIGHT - top - bottom, x_max, y_ticks[-1]
    )
    return frame, y_ticks


def latency_svg(histogram: Sequence[Sequence[float]]) -> str | None:
    """The ``[upper bound s, count]`` histogram as :func:`latency_bars`; ``None`` without a bar.

    Bars on a log-scale x axis, ticks at 1, 2, 5 (or finer) times powers of ten.
    """
    bars = latency_bars(histogram)
    if not bars:
        return None
    low, high = bars[0][0], bars[-1][1]
    frame, y_ticks = _vertical_frame(
        math.log10(high / low), max(count for _, _, count in bars), integer=True
    )
    parts = _y_axis(frame, [(v, _fmt_number(v)) for v in y_ticks], "requests")
    parts.append(f'<g fill="{COLORS["bar"]}">')
    for bar_low, bar_high, count in bars:
        x0, x1, y = (
            frame.x(math.log10(bar_low / low)),
            frame.x(math.log10(bar_high / low)),
            frame.y(count),
        )
        gap = 0.5 if x1 - x0 > 3 else 0.0
        tip = f"{format_seconds(bar_low)} – {format_seconds(bar_high)}: {count:,}"
        parts.append(_rect(x0 + gap, y, max(x1 - x0 - 2 * gap, 0.5), frame.y(0) - y, tip))
    parts.append("</g>")
    ticks = [(math.log10(tick / low), format_seconds(tick)) for tick in _log_ticks(low, high)]
    parts += _x_axis(frame, ticks, "latency (log scale)")
    return _svg(PLOT_TITLES["latency"], PLOT_HEIGHT, parts)


def throughput_svg(timeline: Sequence[Sequence[int]]) -> str | None:
    """Completions per second over a sorted ``[second, completions]`` timeline; ``None`` if all 0.

    A step outline, each step a :func:`downsample_timeline` bucket's mean
    rate; the time axis is in s, min or h by the run's length.
    """
    width, points = downsample_timeline(timeline)
    if not any(count for _, count in points):
        return None
    span_s = timeline[-1][0] + 1  # the last bucket may cover fewer than ``width`` seconds
    unit_name, unit = _time_unit(span_s)
    span = span_s / unit
    steps = [(start, min(start + width, span_s), count) for start, count in points]
    rates = [count / (end - start) for start, end, count in steps]
    frame, y_ticks = _vertical_frame(span, max(rates), integer=False)
    y_label = "completions / s" + (f" (mean over {width} s)" if width > 1 else "")
    parts = _y_axis(frame, [(v, _fmt_number(v)) for v in y_ticks], y_label)
    outline = [(frame.x(0), frame.y(0))]
    for (start, end, _), rate in zip(steps, rates, strict=False):
        outline += [(frame.x(start / unit), frame.y(rate)), (frame.x(end / unit), frame.y(rate))]
    outline.append((frame.x(span), frame.y(0)))
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in outline)
    parts.append(
        f'<polygon points="{coords}" fill="{COLORS["fill"]}" stroke="{COLORS["bar"]}" stroke-width="1.5"/>'
    )
    x_ticks = [v for v in _nice_ticks(span, integer=False) if v <= span + 1e-9]
    parts += _x_axis(
        frame, [(v, _fmt_number(v)) for v in x_ticks], f"time since start ({unit_name})"
    )
    return _svg(PLOT_TITLES["throughput"], PLOT_HEIGHT, parts)


def errors_svg(errors: Mapping[str, int]) -> str | None:
    """One bar per error class with failures, largest first (ties by name); ``None`` if none."""
    rows = sorted(
        ((name, [count]) for name, count in errors.items() if count),
        key=lambda row: (-row[1][0], row[0]),
    )
    return _hbar_svg(
        PLOT_TITLES["errors"], rows, [("failed requests", COLORS["failures"])], "failed requests"
    )


def keys_svg(keys: Mapping[str, Mapping[str, int]]) -> str | None:
    """Requests, failures and rate-limited answers per key, in the given order; ``None`` if all 0."""
    rows = [(name, [k["requests"], k["failures"], k["rate_limited"]]) for name, k in keys.items()]
    rows = [row for row in rows if any(row[1])]
    series = [
        ("requests", COLORS["bar"]),
        ("failures", COLORS["failures"]),
        ("rate limited", COLORS["rate_limited"]),
    ]
    return _hbar_svg(PLOT_TITLES["keys"], rows, series, "requests")


def _hbar_svg(
    title: str, rows: list[tuple[str, list[int]]], series: list[tuple[str, str]], x_label: str
) -> str | None:
    """Horizontal bars, one row per label, one bar per series side by side; long lists folded."""
    if not rows:
        return None
    if len(rows) > MAX_BARS:
        rest = rows[MAX_BARS - 1 :]
        folded = [sum(values[i] for _, values in rest) for i in range(len(series))]
        rows = rows[: MAX_BARS - 1] + [(f"other ({len(rest)})", folded)]
    bar, gap = (16, 8) if len(series) == 1 else (9, 10)
    row_height, font = bar * len(series) + gap, 11 if len(series) == 1 else 9
    label_chars = max(len(_clip(str(label))) for label, _ in rows)
    left = min(max(80, 14 + 7 * label_chars), 280)
    top = 12 if len(series) == 1 else 34
    x_ticks = _nice_ticks(max(max(values) for _, values in rows), integer=True)
    frame = _Frame(
        left, top, PLOT_WIDTH - left - 64, row_height * len(rows), x_max=x_ticks[-1], y_max=1
    )
    parts = _x_axis(frame, [(v, _fmt_number(v)) for v in x_ticks], x_label, grid=True)
    parts.append(_line(left, top, left, top + frame.height))
    if len(series) > 1:
        parts += _legend(series, left)
    for r, (label, values) in enumerate(rows):
        y = top + r * row_height + gap / 2
        middle = y + bar * len(series) / 2
        text = f"<title>{_e(label)}</title>{_e(_clip(str(label)))}"
        parts.append(f'<text x="{left - 6}" y="{middle + 4:.1f}" text-anchor="end">{text}</text>')
        for s, ((name, color), value) in enumerate(zip(series, values, strict=False)):
            y_bar, x_end = y + s * bar, frame.x(value)
            tip = f"{label}: {value:,} {name}"
            parts.append(_rect(left, y_bar, x_end - left, bar - 1, tip, color))
            parts.append(
                f'<text x="{x_end + 4:.1f}" y="{y_bar + bar - 3:.1f}" font-size="{font}">{value:,}</text>'
            )
    return _svg(title, top + frame.height + 48, parts)


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str = AXIS) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"/>'


def _rect(
    x: float, y: float, width: float, height: float, tip: str, fill: str | None = None
) -> str:
    """A bar with a hover tip; without ``fill`` it takes the enclosing group's."""
    paint = f' fill="{fill}"' if fill else ""
    box = f'x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}"'
    return f"<rect {box}{paint}><title>{_e(tip)}</title></rect>"


def _legend(series: list[tuple[str, str]], left: float) -> list[str]:
    parts, x = [], left
    for name, color in series:
        parts.append(f'<rect x="{x:.1f}" y="8" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{x + 16:.1f}" y="18">{_e(name)}</text>')
        x += 28 + 7 * len(name)
    return parts


# ---------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def _log_ticks(low: float, high: float) -> list[float]:
    """Round values in ``[low, high]``: powers of ten, else 1-2-5, else finer; else the two ends."""
    exponents = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    ticks: list[float] = []
    for mantissas in LOG_TICK_MANTISSAS:
        ticks = [float(f"{m}e{e}") for e in exponents for m in mantissas]
        ticks = [t for t in ticks if low * (1 - 1e-9) <= t <= high * (1 + 1e-9)]
        if len(ticks) >= 3:
            return ticks
    return ticks if len(ticks) >= 2 else [low, high]


def _nice_ticks(top: float, integer: bool) -> list[float]:
    """0, then steps of 1, 2 or 5 times a power of ten, up to at least ``top``; about five."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    if integer:
        step = max(step, 1)
    return [round(i * step, 10) for i in range(math.ceil(top / step - 1e-9) + 1)]


def _fmt_number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.3g}"


def format_seconds(seconds: float) -> str:
    """A latency in µs, ms or s, three significant digits."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s" if seconds < 1000 else f"{seconds:,.0f} s"


def _time_unit(span_s: float) -> tuple[str, int]:
    if span_s <= 600:
        return "s", 1
    return ("min", 60) if span_s <= 36000 else ("h", 3600)
