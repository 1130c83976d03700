"""The bulk runner's end-of-run report: one JSON document and one HTML page.

``build_report(run)`` takes the orchestrator's plain ``run`` dict and returns
a new dict (the input is never modified): the types of the parts it knows are
checked (a wrong type raises ``TypeError``, a negative count ``ValueError``,
both naming the field), every missing optional part is filled with an empty
value (``""``, ``0``, ``[]``, ``{}``, ``None`` for ``stopped`` and the
timestamps), a non-finite figure becomes 0, anything inside ``settings`` that
looks like a secret is dropped (see :func:`looks_secret`), at most
:data:`MAX_MALFORMED_LINES` malformed lines are kept, and ``success_rate`` is
added: ok / (ok + failed) in percent, 0 when nothing finished.  Unknown
top-level entries pass through.  Building a built report gives it back.

``render_html(report)`` draws one self-contained page: inline CSS and SVG, no
script, no external resource, so it renders offline.  The command, a summary
table, four plots (:data:`PLOT_TITLES`), the malformed lines and the settings.
A plot with nothing to draw is replaced by a short "No data" note.  Every
string that comes from the data is escaped.  A long timeline is summed into at
most :data:`MAX_TIMELINE_POINTS` buckets (:func:`downsample_timeline`).

``write_reports(report, json_path, html_path)`` writes both, UTF-8, creating
parent directories; each file goes under a temporary name and is renamed, so
an interrupted write never leaves half a report.
"""

from __future__ import annotations

import copy
import datetime
import html
import json
import math
import os
import pathlib
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

__all__ = [
    "GAP_STEPS",
    "LATENCY_FLOOR_S",
    "LONE_BUCKET_RATIO",
    "MAX_BARS",
    "MAX_LATENCY_BARS",
    "MAX_MALFORMED_LINES",
    "MAX_TIMELINE_POINTS",
    "PLOT_TITLES",
    "build_report",
    "downsample_timeline",
    "latency_bars",
    "looks_secret",
    "render_html",
    "write_reports",
]

MAX_TIMELINE_POINTS = 600
MAX_MALFORMED_LINES = 100
MAX_BARS = 25  # rows of a horizontal bar chart; the rest are summed into one "other" row
MAX_LATENCY_BARS = 60  # more histogram rows than this are merged in runs of neighbours
LATENCY_FLOOR_S = 1e-6  # a bucket bound at or below 0 counts as 1 µs
LONE_BUCKET_RATIO = 10 ** 0.2  # a histogram of one row is drawn this wide (a fifth of a decade)
MIN_BUCKET_RATIO = 1.0001  # bounds nearer than this (rounding noise) do not set the bucket width
GAP_STEPS = 1.5  # a step between two histogram bounds this many times the smallest one is a gap
LOG_TICK_MANTISSAS = ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7))
SECRET_MIN_CHARS = 9  # a secret-named setting is dropped when its string is longer than 8 characters
SECRET_NAMES = ("key", "keys")
SECRET_NAME_ENDINGS = ("apikey", "apikeys", "token", "secret", "password")
MAX_LABEL_CHARS = 32
PLOT_WIDTH = 720
PLOT_HEIGHT = 240
AXIS, GRID = "#333", "#e5e5e5"
COLORS = {"bar": "#4e79a7", "failures": "#e15759", "rate_limited": "#f28e2b", "fill": "#c6d6ea"}

TEXT_FIELDS = ("command", "api", "base_url", "input", "output")
TOTALS_FIELDS = ("lines", "skipped", "submitted", "ok", "failed", "interrupted", "malformed")
TOTALS_LABELS = {
    "lines": "Lines read",
    "skipped": "Skipped (done before)",
    "submitted": "Submitted",
    "ok": "Succeeded",
    "failed": "Failed",
    "interrupted": "Interrupted",
    "malformed": "Malformed lines",
}
KEY_FIELDS = ("requests", "successes", "failures", "rate_limited")
LATENCY_FIELDS = ("mean", "p50", "p90", "p99", "max")
PLOT_TITLES = {
    "latency": "Latency distribution",
    "throughput": "Throughput over time",
    "errors": "Errors by class",
    "keys": "Load per key",
}

Pathish = Union[str, "os.PathLike[str]"]

# ---------------------------------------------------------------- the JSON report


def build_report(run: Mapping[str, Any]) -> dict:
    """The JSON report of ``run``: checked, completed, secrets dropped, success rate added."""
    if not isinstance(run, Mapping):
        raise TypeError(f"run must be a dict, got {type(run).__name__}")
    report = copy.deepcopy(dict(run))
    for name in TEXT_FIELDS:
        report[name] = _text(report.get(name))
    for name in ("started_at", "finished_at"):
        report[name] = None if report.get(name) is None else _number(report[name], name)
    report["duration_s"] = _number(report.get("duration_s"), "duration_s")
    report["throughput_rps"] = _number(report.get("throughput_rps"), "throughput_rps")
    report["stopped"] = None if report.get("stopped") is None else _text(report["stopped"])
    report["totals"] = _counts(report.get("totals"), TOTALS_FIELDS, "totals")
    report["latency"] = _latency(report.get("latency"))
    report["timeline"] = _pairs(report.get("timeline"), "timeline", _count)
    report["errors_by_class"] = {
        str(name): _count(count, f"errors_by_class[{name!r}]")
        for name, count in _mapping(report.get("errors_by_class"), "errors_by_class").items()
    }
    report["keys"] = {
        str(name): _counts(figures, KEY_FIELDS, f"keys[{name!r}]")
        for name, figures in _mapping(report.get("keys"), "keys").items()
    }
    circuit = _mapping(report.get("circuit"), "circuit")
    circuit["state"] = _text(circuit.get("state"))
    circuit["times_opened"] = _count(circuit.get("times_opened"), "circuit.times_opened")
    report["circuit"] = circuit
    report["malformed_lines"] = [
        [_count(line, "malformed_lines"), _text(reason)]
        for line, reason in _pair_list(report.get("malformed_lines"), "malformed_lines")[:MAX_MALFORMED_LINES]
    ]
    report["settings"] = _without_secrets(_mapping(report.get("settings"), "settings"))
    report["client_stats"] = _mapping(report.get("client_stats"), "client_stats")
    totals = report["totals"]
    finished = totals["ok"] + totals["failed"]
    report["success_rate"] = 100.0 * totals["ok"] / finished if finished else 0.0
    return report


def looks_secret(name: Any, value: Any) -> bool:
    """True for a setting named like a key or token whose value is, or holds, a long string.

    Names are compared without case, ``-`` or ``_``: ``key``, ``keys`` and
    anything ending in ``api_key(s)``, ``token``, ``secret`` or ``password``.
    """
    folded = str(name).lower().replace("_", "").replace("-", "")
    if folded not in SECRET_NAMES and not folded.endswith(SECRET_NAME_ENDINGS):
        return False
    return _holds_long_string(value)


def _holds_long_string(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) >= SECRET_MIN_CHARS
    if isinstance(value, Mapping):
        value = list(value.values())
    return isinstance(value, (list, tuple)) and any(_holds_long_string(v) for v in value)


def _without_secrets(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_secrets(v) for k, v in value.items() if not looks_secret(k, v)}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any, where: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where} must be a number, got {value!r}")
    return float(value) if math.isfinite(value) else 0.0


def _count(value: Any, where: str) -> int:
    number = _number(value, where)
    if number < 0 or not number.is_integer():
        raise ValueError(f"{where} must be a whole number at least 0, got {value!r}")
    return int(number)


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must be a dict, got {type(value).__name__}")
    return dict(value)


def _counts(value: Any, fields: Sequence[str], where: str) -> dict:
    counts = _mapping(value, where)
    for name in fields:
        counts[name] = _count(counts.get(name), f"{where}.{name}")
    return counts


def _pair_list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{where} must be a list of pairs, got {type(value).__name__}")
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError(f"{where} must hold [x, y] pairs, got {item!r}")
    return list(value)


def _pairs(value: Any, where: str, first) -> list:
    """[x, count] pairs, checked and sorted by x."""
    pairs = [[first(x, where), _count(n, where)] for x, n in _pair_list(value, where)]
    return sorted(pairs, key=lambda pair: pair[0])


def _latency(value: Any) -> dict:
    latency = _mapping(value, "latency")
    latency["count"] = _count(latency.get("count"), "latency.count")
    for name in LATENCY_FIELDS:
        latency[name] = _number(latency.get(name), f"latency.{name}")
    latency["histogram"] = _pairs(latency.get("histogram"), "latency.histogram", _number)
    return latency


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
        counts[bound] = counts.get(bound, 0) + count
    bounds = sorted(counts)
    steps = [b / a for a, b in zip(bounds, bounds[1:]) if b / a > MIN_BUCKET_RATIO]
    ratio = min(steps, default=LONE_BUCKET_RATIO)
    bars, previous = [], 0.0
    for bound in bounds:
        contiguous = previous and math.log(bound / previous) < GAP_STEPS * math.log(ratio)
        if counts[bound]:
            bars.append((previous if contiguous else bound / ratio, bound, counts[bound]))
        previous = bound
    return bars if len(bars) <= max_bars else _merged_bars(bars, ratio, max_bars)


def _merged_bars(bars: list[tuple[float, float, int]], ratio: float, max_bars: int) -> list[tuple[float, float, int]]:
    """Bars on the grid ``first * ratio**i``, ``width`` grid steps each, at most ``max_bars``."""
    first, step = bars[0][1], math.log(ratio)
    index = [round(math.log(high / first) / step) for _, high, _ in bars]
    width = math.ceil((index[-1] + 1) / max_bars)
    groups: dict[int, int] = {}
    for i, (_, _, count) in zip(index, bars):
        groups[i // width] = groups.get(i // width, 0) + count
    return [
        (first * ratio ** (g * width - 1), first * ratio ** (g * width + width - 1), count)
        for g, count in sorted(groups.items())
    ]


# ---------------------------------------------------------------- the HTML page

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
body{margin:0;color:#222;background:#fff;line-height:1.4}
main{max-width:960px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:1.6em;margin-bottom:.3em}
h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}
th,td{padding:3px 12px;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
th[colspan]{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
pre.command{background:#f5f5f5;padding:8px 12px;white-space:pre-wrap;word-break:break-all}
.banner{background:#fff3cd;border:1px solid #e0c36a;padding:6px 12px}
.no-data{color:#777;font-style:italic}
svg{max-width:100%;height:auto;display:block}
"""


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page (see the module docstring)."""
    report = build_report(report)
    body = [
        "<h1>ipfs-accelerate run report</h1>",
        f'<pre class="command"><code>{_e(report["command"])}</code></pre>',
    ]
    if report["stopped"]:
        stopped = _e(report["stopped"])
        body.append(f'<p class="banner">Stopped early: {stopped}. The figures cover the part that ran.</p>')
    body.append(_summary_html(report))
    plots = [
        ("latency", _latency_svg(report["latency"]["histogram"]), "no latency was recorded"),
        ("throughput", _throughput_svg(report["timeline"]), "no request completed"),
        ("errors", _errors_svg(report["errors_by_class"]), "no request failed"),
        ("keys", _keys_svg(report["keys"]), "no per-key figures"),
    ]
    for name, svg, reason in plots:
        body.append(f"<h2>{_e(PLOT_TITLES[name])}</h2>")
        body.append(svg or f'<p class="no-data">No data: {_e(reason)}.</p>')
    body.append(_malformed_html(report))
    body.append(_settings_html(report["settings"]))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Run report: {_e(report['input'] or 'jobs')}</title>\n<style>{CSS}</style>\n</head>\n"
        "<body>\n<main>\n" + "\n".join(part for part in body if part) + "\n</main>\n</body>\n</html>\n"
    )


def _summary_html(report: dict) -> str:
    totals, latency, circuit = report["totals"], report["latency"], report["circuit"]
    sections = {
        "Run": [
            ("API", report["api"] or "—"),
            ("Base URL", report["base_url"] or "—"),
            ("Input", report["input"] or "—"),
            ("Output", report["output"] or "—"),
            ("Started", _fmt_epoch(report["started_at"])),
            ("Finished", _fmt_epoch(report["finished_at"])),
            ("Ended", f"stopped early ({report['stopped']})" if report["stopped"] else "completed"),
        ],
        "Requests": [(TOTALS_LABELS[name], f"{totals[name]:,}") for name in TOTALS_FIELDS]
        + [
            ("Success rate", f"{report['success_rate']:.2f} %"),
            ("Throughput", f"{report['throughput_rps']:.3g} requests/s"),
            ("Duration", _fmt_duration(report["duration_s"])),
        ],
        "Latency": [("Measured", f"{latency['count']:,}")]
        + [(name, _fmt_seconds(latency[name])) for name in LATENCY_FIELDS],
        "Circuit breaker": [
            ("State", circuit["state"] or "—"),
            ("Times opened", f"{circuit['times_opened']:,}"),
        ],
    }
    rows = []
    for title, entries in sections.items():
        rows.append(f'<tr><th colspan="2">{_e(title)}</th></tr>')
        rows.extend(f"<tr><td>{_e(label)}</td><td>{_e(value)}</td></tr>" for label, value in entries)
    return "<h2>Summary</h2>\n<table>\n" + "\n".join(rows) + "\n</table>"


def _malformed_html(report: dict) -> str:
    lines = report["malformed_lines"]
    if not lines:
        return ""
    total = max(report["totals"]["malformed"], len(lines))
    note = f"<p>Showing the first {len(lines):,} of {total:,}.</p>\n" if total > len(lines) else ""
    rows = "\n".join(f'<tr><td class="num">{line}</td><td>{_e(reason)}</td></tr>' for line, reason in lines)
    return f"<h2>Malformed lines</h2>\n{note}<table>\n<tr><th>Line</th><th>Reason</th></tr>\n{rows}\n</table>"


def _settings_html(settings: dict) -> str:
    if not settings:
        return ""
    rows = "\n".join(
        f"<tr><td>{_e(name)}</td><td><code>{_e(json.dumps(value, ensure_ascii=False, default=str))}</code></td></tr>"
        for name, value in settings.items()
    )
    return f"<h2>Settings</h2>\n<table>\n{rows}\n</table>"


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


def _x_axis(frame: _Frame, ticks: list[tuple[float, str]], label: str, grid: bool = False) -> list[str]:
    bottom = frame.top + frame.height
    parts = [_line(frame.left, bottom, frame.left + frame.width, bottom)]
    for value, text in ticks:
        x = frame.x(value)
        if grid:
            parts.append(_line(x, frame.top, x, bottom, GRID))
        parts.append(_line(x, bottom, x, bottom + 4))
        parts.append(f'<text x="{x:.1f}" y="{bottom + 17:.1f}" text-anchor="middle">{_e(text)}</text>')
    middle = frame.left + frame.width / 2
    parts.append(f'<text x="{middle:.1f}" y="{bottom + 36:.1f}" text-anchor="middle" fill="#555">{_e(label)}</text>')
    return parts


def _y_axis(frame: _Frame, ticks: list[tuple[float, str]], label: str) -> list[str]:
    right = frame.left + frame.width
    parts = [_line(frame.left, frame.top, frame.left, frame.top + frame.height)]
    for value, text in ticks:
        y = frame.y(value)
        parts.append(_line(frame.left, y, right, y, GRID))
        parts.append(f'<text x="{frame.left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end">{_e(text)}</text>')
    middle = frame.top + frame.height / 2
    rotate = f'transform="rotate(-90 14 {middle:.1f})"'
    parts.append(f'<text x="14" y="{middle:.1f}" text-anchor="middle" fill="#555" {rotate}>{_e(label)}</text>')
    return parts


def _vertical_frame(x_max: float, y_top: float, integer: bool) -> tuple[_Frame, list[float]]:
    y_ticks = _nice_ticks(y_top, integer)
    left, top, right, bottom = 72, 12, 20, 48
    frame = _Frame(left, top, PLOT_WIDTH - left - right, PLOT_HEIGHT - top - bottom, x_max, y_ticks[-1])
    return frame, y_ticks


def _latency_svg(histogram: list) -> Optional[str]:
    """Bars on a log-scale x axis, ticks at 1, 2, 5 (or finer) times powers of ten."""
    bars = latency_bars(histogram)
    if not bars:
        return None
    low, high = bars[0][0], bars[-1][1]
    frame, y_ticks = _vertical_frame(math.log10(high / low), max(count for _, _, count in bars), integer=True)
    parts = _y_axis(frame, [(v, _fmt_number(v)) for v in y_ticks], "requests")
    parts.append(f'<g fill="{COLORS["bar"]}">')
    for bar_low, bar_high, count in bars:
        x0, x1, y = frame.x(math.log10(bar_low / low)), frame.x(math.log10(bar_high / low)), frame.y(count)
        gap = 0.5 if x1 - x0 > 3 else 0.0
        tip = f"{_fmt_seconds(bar_low)} – {_fmt_seconds(bar_high)}: {count:,}"
        parts.append(_rect(x0 + gap, y, max(x1 - x0 - 2 * gap, 0.5), frame.y(0) - y, tip))
    parts.append("</g>")
    ticks = [(math.log10(tick / low), _fmt_seconds(tick)) for tick in _log_ticks(low, high)]
    parts += _x_axis(frame, ticks, "latency (log scale)")
    return _svg(PLOT_TITLES["latency"], PLOT_HEIGHT, parts)


def _throughput_svg(timeline: list) -> Optional[str]:
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
    for (start, end, _), rate in zip(steps, rates):
        outline += [(frame.x(start / unit), frame.y(rate)), (frame.x(end / unit), frame.y(rate))]
    outline.append((frame.x(span), frame.y(0)))
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in outline)
    parts.append(f'<polygon points="{coords}" fill="{COLORS["fill"]}" stroke="{COLORS["bar"]}" stroke-width="1.5"/>')
    x_ticks = [v for v in _nice_ticks(span, integer=False) if v <= span + 1e-9]
    parts += _x_axis(frame, [(v, _fmt_number(v)) for v in x_ticks], f"time since start ({unit_name})")
    return _svg(PLOT_TITLES["throughput"], PLOT_HEIGHT, parts)


def _errors_svg(errors: dict) -> Optional[str]:
    rows = sorted(((name, [count]) for name, count in errors.items() if count), key=lambda row: (-row[1][0], row[0]))
    return _hbar_svg(PLOT_TITLES["errors"], rows, [("failed requests", COLORS["failures"])], "failed requests")


def _keys_svg(keys: dict) -> Optional[str]:
    rows = [(name, [k["requests"], k["failures"], k["rate_limited"]]) for name, k in keys.items()]
    rows = [row for row in rows if any(row[1])]
    series = [("requests", COLORS["bar"]), ("failures", COLORS["failures"]), ("rate limited", COLORS["rate_limited"])]
    return _hbar_svg(PLOT_TITLES["keys"], rows, series, "requests")


def _hbar_svg(title: str, rows: list, series: list[tuple[str, str]], x_label: str) -> Optional[str]:
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
    frame = _Frame(left, top, PLOT_WIDTH - left - 64, row_height * len(rows), x_max=x_ticks[-1], y_max=1)
    parts = _x_axis(frame, [(v, _fmt_number(v)) for v in x_ticks], x_label, grid=True)
    parts.append(_line(left, top, left, top + frame.height))
    if len(series) > 1:
        parts += _legend(series, left)
    for r, (label, values) in enumerate(rows):
        y = top + r * row_height + gap / 2
        middle = y + bar * len(series) / 2
        text = f"<title>{_e(label)}</title>{_e(_clip(str(label)))}"
        parts.append(f'<text x="{left - 6}" y="{middle + 4:.1f}" text-anchor="end">{text}</text>')
        for s, ((name, color), value) in enumerate(zip(series, values)):
            y_bar, x_end = y + s * bar, frame.x(value)
            tip = f"{label}: {value:,} {name}"
            parts.append(_rect(left, y_bar, x_end - left, bar - 1, tip, color))
            parts.append(f'<text x="{x_end + 4:.1f}" y="{y_bar + bar - 3:.1f}" font-size="{font}">{value:,}</text>')
    return _svg(title, top + frame.height + 48, parts)


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str = AXIS) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"/>'


def _rect(x: float, y: float, width: float, height: float, tip: str, fill: Optional[str] = None) -> str:
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


def _fmt_seconds(seconds: float) -> str:
    """A latency in µs, ms or s, three significant digits."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s" if seconds < 1000 else f"{seconds:,.0f} s"


def _fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def _fmt_epoch(epoch: Optional[float]) -> str:
    if epoch is None:
        return "—"
    try:
        moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"{epoch:.0f} (epoch seconds)"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _time_unit(span_s: float) -> tuple[str, int]:
    if span_s <= 600:
        return "s", 1
    return ("min", 60) if span_s <= 36000 else ("h", 3600)


# ---------------------------------------------------------------- files


def write_reports(report: Mapping[str, Any], json_path: Pathish, html_path: Pathish) -> None:
    """Write the JSON report (indent 2) and the HTML page, UTF-8, creating parent directories."""
    report = build_report(report)
    _write_text(pathlib.Path(json_path), json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    _write_text(pathlib.Path(html_path), render_html(report))


def _write_text(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
