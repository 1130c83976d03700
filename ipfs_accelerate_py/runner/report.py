"""The bulk runner's end-of-run report: one JSON document and one HTML page.

``build_report(run)`` takes the orchestrator's plain ``run`` dict and returns
a new dict (the input is never modified): the types of the parts it knows are
checked (a wrong type raises ``TypeError``, a negative count ``ValueError``,
both naming the field), every missing optional part is filled with an empty
value (``""``, ``0``, ``[]``, ``{}``, ``None`` for ``stopped`` and the
timestamps), a non-finite figure becomes 0, anything inside ``settings`` that
looks like a secret is dropped (see :func:`looks_secret`), at most
:data:`MAX_MALFORMED_LINES` malformed lines are kept, and ``success_rate`` is
added in percent: over the whole job file (``job``: its ``lines``, ``ok``,
``failed``, ``not_run`` and ``bad`` across every run, so a stopped run, or
one that skipped bad lines, never shows 100 % of a job it left undone), or ok / (ok + failed) of the run when there is
no ``job``; 0 when nothing finished.  ``runs`` lists every run of the job
(start, end, what it sent, how it ended).  Unknown
top-level entries pass through.  Building a built report gives it back.

``render_html(report)`` draws one self-contained page: inline CSS and SVG, no
script, no external resource, so it renders offline.  The command, a summary
table, four plots (:data:`~ipfs_accelerate_py.runner.plots.PLOT_TITLES`, drawn
by :mod:`ipfs_accelerate_py.runner.plots`), the malformed lines and the
settings.  A plot with nothing to draw is replaced by a short "No data" note.
Every string that comes from the data is escaped.

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from .plots import PLOT_TITLES, errors_svg, format_seconds, keys_svg, latency_svg, throughput_svg
from .target import target_text

__all__ = [
    "MAX_MALFORMED_LINES",
    "build_report",
    "looks_secret",
    "render_html",
    "write_reports",
]

MAX_MALFORMED_LINES = 100
SECRET_MIN_CHARS = (
    9  # a secret-named setting is dropped when its string is longer than 8 characters
)
SECRET_NAMES = ("key", "keys")
SECRET_NAME_ENDINGS = ("apikey", "apikeys", "token", "secret", "password")

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
KEY_FIELDS = ("requests", "successes", "failures", "rate_limited", "auth_failures")
JOB_FIELDS = ("lines", "ok", "failed", "not_run", "bad")  # the whole job file, across its runs
JOB_LABELS = {
    "lines": "Lines in the file",
    "ok": "Succeeded",
    "failed": "Failed",
    "not_run": "Not run yet",
    "bad": "Bad lines (skipped)",
}
RUN_FIELDS = ("submitted", "ok", "failed", "interrupted")
LATENCY_FIELDS = ("mean", "p50", "p90", "p99", "max")

Pathish = Union[str, "os.PathLike[str]"]
JsonObject = dict[str, Any]
"""A JSON object: the report is JSON, read back from a file and checked field by field."""

# ---------------------------------------------------------------- the JSON report


def build_report(run: Mapping[str, Any]) -> JsonObject:
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
        for line, reason in _pair_list(report.get("malformed_lines"), "malformed_lines")[
            :MAX_MALFORMED_LINES
        ]
    ]
    report["settings"] = _without_secrets(_mapping(report.get("settings"), "settings"))
    report["client_stats"] = _mapping(report.get("client_stats"), "client_stats")
    totals = report["totals"]
    finished = totals["ok"] + totals["failed"]
    report["success_rate"] = 100.0 * totals["ok"] / finished if finished else 0.0
    if report.get("job") is not None:
        job = report["job"] = _counts(report["job"], JOB_FIELDS, "job")
        report["success_rate"] = 100.0 * job["ok"] / job["lines"] if job["lines"] else 0.0
    report["runs"] = [_run_entry(entry) for entry in _list(report.get("runs"), "runs")]
    report["target"] = _mapping(report.get("target"), "target")
    report["keys_disabled"] = {
        str(name): _text(why)
        for name, why in _mapping(report.get("keys_disabled"), "keys_disabled").items()
    }
    return report


def _run_entry(value: Any) -> JsonObject:
    entry = _mapping(value, "runs[]")
    out: JsonObject = {
        name: None if entry.get(name) is None else _number(entry[name], f"runs[].{name}")
        for name in ("started_at", "finished_at", "duration_s")
    }
    out.update(_counts({k: entry.get(k, 0) for k in RUN_FIELDS}, RUN_FIELDS, "runs[]"))
    out["ended"] = _text(entry.get("ended")) or "finished"
    out["exit_code"] = (
        None if entry.get("exit_code") is None else _count(entry["exit_code"], "runs[].exit_code")
    )
    return out


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


def _mapping(value: Any, where: str) -> JsonObject:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must be a dict, got {type(value).__name__}")
    return dict(value)


def _counts(value: Any, fields: Sequence[str], where: str) -> JsonObject:
    counts = _mapping(value, where)
    for name in fields:
        counts[name] = _count(counts.get(name), f"{where}.{name}")
    return counts


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{where} must be a list, got {type(value).__name__}")
    return list(value)


def _pair_list(value: Any, where: str) -> list[Sequence[Any]]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{where} must be a list of pairs, got {type(value).__name__}")
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError(f"{where} must hold [x, y] pairs, got {item!r}")
    return list(value)


def _pairs(value: Any, where: str, first: Callable[[Any, str], float]) -> list[list[float]]:
    """[x, count] pairs, checked and sorted by x."""
    pairs = [[first(x, where), _count(n, where)] for x, n in _pair_list(value, where)]
    return sorted(pairs, key=lambda pair: pair[0])


def _latency(value: Any) -> JsonObject:
    latency = _mapping(value, "latency")
    latency["count"] = _count(latency.get("count"), "latency.count")
    for name in LATENCY_FIELDS:
        latency[name] = _number(latency.get(name), f"latency.{name}")
    latency["histogram"] = _pairs(latency.get("histogram"), "latency.histogram", _number)
    return latency


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
        body.append(
            f'<p class="banner">Stopped early: {stopped}. The figures cover the part that ran.</p>'
        )
    body.append(_summary_html(report))
    plots = [
        ("latency", latency_svg(report["latency"]["histogram"]), "no latency was recorded"),
        ("throughput", throughput_svg(report["timeline"]), "no request completed"),
        ("errors", errors_svg(report["errors_by_class"]), "no request failed"),
        ("keys", keys_svg(report["keys"]), "no per-key figures"),
    ]
    for name, svg, reason in plots:
        body.append(f"<h2>{_e(PLOT_TITLES[name])}</h2>")
        body.append(svg or f'<p class="no-data">No data: {_e(reason)}.</p>')
    body.append(_runs_html(report["runs"]))
    body.append(_malformed_html(report))
    body.append(_settings_html(report["settings"]))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Run report: {_e(report['input'] or 'jobs')}</title>\n<style>{CSS}</style>\n</head>\n"
        "<body>\n<main>\n"
        + "\n".join(part for part in body if part)
        + "\n</main>\n</body>\n</html>\n"
    )


def _summary_html(report: JsonObject) -> str:
    totals, latency, circuit = report["totals"], report["latency"], report["circuit"]
    sections = {
        "Run": [
            ("Target", target_text(report["target"]) if report["target"] else "—"),
            ("API", report["api"] or "—"),
            ("Base URL", report["base_url"] or "—"),
            ("Input", report["input"] or "—"),
            ("Output", report["output"] or "—"),
            ("Started", _fmt_epoch(report["started_at"])),
            ("Finished", _fmt_epoch(report["finished_at"])),
            ("Ended", f"stopped early ({report['stopped']})" if report["stopped"] else "completed"),
        ],
        "Job (every run of this file)": (
            [(JOB_LABELS[name], f"{report['job'][name]:,}") for name in JOB_FIELDS]
            if report.get("job")
            else []
        ),
        "Requests": [(TOTALS_LABELS[name], f"{totals[name]:,}") for name in TOTALS_FIELDS]
        + [
            ("Success rate", f"{report['success_rate']:.2f} %"),
            ("Throughput", f"{report['throughput_rps']:.3g} requests/s"),
            ("Duration", _fmt_duration(report["duration_s"])),
        ],
        "Latency": [("Measured", f"{latency['count']:,}")]
        + [(name, format_seconds(latency[name])) for name in LATENCY_FIELDS],
        "Keys disabled": [(name, why) for name, why in report["keys_disabled"].items()],
        "Circuit breaker": [
            ("State", circuit["state"] or "—"),
            ("Times opened", f"{circuit['times_opened']:,}"),
        ],
    }
    rows = []
    for title, entries in sections.items():
        if not entries:
            continue
        rows.append(f'<tr><th colspan="2">{_e(title)}</th></tr>')
        rows.extend(
            f"<tr><td>{_e(label)}</td><td>{_e(value)}</td></tr>" for label, value in entries
        )
    return "<h2>Summary</h2>\n<table>\n" + "\n".join(rows) + "\n</table>"


def _runs_html(runs: list[JsonObject]) -> str:
    if not runs:
        return ""
    head = "".join(
        f"<th>{_e(name)}</th>"
        for name in (
            "Run",
            "Started",
            "Duration",
            "Submitted",
            "Ok",
            "Failed",
            "Interrupted",
            "Ended",
        )
    )
    rows = "\n".join(
        f'<tr><td class="num">{number}</td><td>{_e(_fmt_epoch(run["started_at"]))}</td>'
        f"<td>{_e(_fmt_duration(run['duration_s'] or 0.0))}</td>"
        + "".join(f'<td class="num">{run[name]:,}</td>' for name in RUN_FIELDS)
        + f"<td>{_e(run['ended'])}</td></tr>"
        for number, run in enumerate(runs, start=1)
    )
    return f"<h2>Runs of this job</h2>\n<table>\n<tr>{head}</tr>\n{rows}\n</table>"


def _malformed_html(report: JsonObject) -> str:
    lines = report["malformed_lines"]
    if not lines:
        return ""
    total = max(report["totals"]["malformed"], len(lines))
    note = f"<p>Showing the first {len(lines):,} of {total:,}.</p>\n" if total > len(lines) else ""
    rows = "\n".join(
        f'<tr><td class="num">{line}</td><td>{_e(reason)}</td></tr>' for line, reason in lines
    )
    return f"<h2>Malformed lines</h2>\n{note}<table>\n<tr><th>Line</th><th>Reason</th></tr>\n{rows}\n</table>"


def _settings_html(settings: JsonObject) -> str:
    if not settings:
        return ""
    rows = "\n".join(
        f"<tr><td>{_e(name)}</td><td><code>{_e(json.dumps(value, ensure_ascii=False, default=str))}</code></td></tr>"
        for name, value in settings.items()
    )
    return f"<h2>Settings</h2>\n<table>\n{rows}\n</table>"


# ---------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def _fmt_epoch(epoch: float | None) -> str:
    if epoch is None:
        return "—"
    try:
        moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"{epoch:.0f} (epoch seconds)"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


# ---------------------------------------------------------------- files


def write_reports(report: Mapping[str, Any], json_path: Pathish, html_path: Pathish) -> None:
    """Write the JSON report (indent 2) and the HTML page, UTF-8, creating parent directories."""
    report = build_report(report)
    _write_text(
        pathlib.Path(json_path),
        json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n",
    )
    _write_text(pathlib.Path(html_path), render_html(report))


def _write_text(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
