"""What the bulk runner shows while it works: a live rich view, quiet, or JSON lines.

The orchestrator drives a display from its asyncio loop, so nothing here
blocks or starts a thread::

    display = make_display("auto")
    display.start(total)            # once; total lines, or None if not known yet
    display.update(snapshot)        # often, even hundreds of times a second
    display.note("line 17: not JSON (skipped)")   # now and then
    display.finish(summary)         # once: stop live output, print the summary

``snapshot`` is a plain dict (``elapsed_s``, ``total``, ``done``, ``ok``,
``failed``, ``skipped``, ``malformed``, ``in_flight``, ``queued``,
``throughput_rps``, ``eta_s``, ``errors_by_class``, ``circuit_state``,
``keys``, ``stopping``); ``summary`` is a final snapshot plus ``output``,
``report_json``, ``report_html``, ``duration_s``, ``latency`` (``p50``,
``p90``, ``p99``, ``max`` in seconds) and ``stopped``.  Every field is
optional to a display: a missing one is shown as zero or left out.

Displays throttle themselves: :class:`RichDisplay` draws at most
:data:`RICH_REFRESH_INTERVAL_S` apart, :class:`JsonLogDisplay` writes a
progress line at most ``interval`` seconds apart.  Drawing happens inside
``update``/``note`` (no timer), so a snapshot that arrives inside the window
is shown by the next call after it; the orchestrator should call ``update``
periodically (the elapsed time moves even when no request ends).

Output goes to stderr by default, since results may go to stdout.  ``rich``
is imported by this module only.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TextIO, TypedDict

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..resilience.errors import SettingError

__all__ = [
    "DEFAULT_JSON_INTERVAL_S",
    "MODES",
    "NOTES_SHOWN",
    "RICH_REFRESH_INTERVAL_S",
    "Display",
    "JsonLogDisplay",
    "QuietDisplay",
    "RichDisplay",
    "make_display",
    "summary_lines",
]

MODES = ("auto", "json", "quiet", "rich")
"""The modes :func:`make_display` accepts; ``auto`` is rich on a TTY, else quiet."""

RICH_REFRESH_INTERVAL_S = 0.125
"""At most 8 redraws a second of the live view."""

DEFAULT_JSON_INTERVAL_S = 1.0
"""Seconds between two JSON progress lines, unless told otherwise."""

NOTES_SHOWN = 3
"""How many of the latest notes the live view (and the rich summary) shows."""

MAX_KEYS_SHOWN = 8
"""Keys listed in the live view, by name; the rest are counted."""

MAX_ERROR_CLASSES_SHOWN = 6
"""Error classes listed in the live view, most frequent first; the rest are counted."""

CIRCUIT_STYLES = {"CLOSED": "green", "HALF_OPEN": "yellow", "OPEN": "bold red"}

Clock = Callable[[], float]


class KeyLoad(TypedDict):
    """One key's row of a snapshot."""

    in_flight: int
    requests: int
    rate_limited: int


class Snapshot(TypedDict):
    """What the runner hands :meth:`Display.update` (see the module's docstring)."""

    elapsed_s: float
    total: int | None
    done: int
    ok: int
    failed: int
    skipped: int
    malformed: int
    interrupted: int
    in_flight: int
    queued: int
    throughput_rps: float
    eta_s: float | None
    errors_by_class: dict[str, int]
    circuit_state: str
    keys: dict[str, KeyLoad]
    stopping: bool


class Display(Protocol):
    """What the orchestrator calls; every implementation has these four methods."""

    def start(self, total: int | None) -> None: ...

    def update(self, snapshot: Mapping[str, Any]) -> None: ...

    def note(self, message: str) -> None: ...

    def finish(self, summary: Mapping[str, Any]) -> None: ...


# ---------------------------------------------------------------- formatting


def _duration(seconds: float | None) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on; ``--:--`` when unknown."""
    if seconds is None:
        return "--:--"
    whole = max(0, int(round(seconds)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _latency(seconds: float) -> str:
    """Milliseconds under a second, seconds from there on."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _done_of_total(done: int, total: int | None) -> str:
    return f"{done}/{total if total is not None else '?'}"


def _percent(done: int, total: int | None) -> str:
    if total is None:
        return "--%"
    if total <= 0:
        return "100%"
    return f"{min(100.0, 100.0 * done / total):.0f}%"


def _errors_text(errors: Mapping[str, int], limit: int | None = None) -> str:
    """``"RateLimitError 3, ServerError 2"``, most frequent first; ``"none"`` if empty."""
    ranked = sorted(errors.items(), key=lambda item: (-item[1], item[0]))
    shown = ranked if limit is None else ranked[:limit]
    text = ", ".join(f"{name} {count}" for name, count in shown) or "none"
    if len(ranked) > len(shown):
        text += f", +{len(ranked) - len(shown)} more"
    return text


def _throughput(summary: Mapping[str, Any], duration: float) -> float:
    rate = summary.get("throughput_rps")
    if rate is not None:
        return float(rate)
    return summary.get("done", 0) / duration if duration > 0 else 0.0


def summary_lines(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The final summary as ``(label, value)`` rows, shared by rich and quiet output."""
    duration = float(summary.get("duration_s", summary.get("elapsed_s", 0.0)) or 0.0)
    done, total = summary.get("done", 0), summary.get("total")
    rows = [
        ("status", f"stopped: {summary['stopped']}" if summary.get("stopped") else "finished"),
        *([("target", str(summary["target"]))] if summary.get("target") else []),
        (
            "requests",
            f"{_done_of_total(done, total)} done in {_duration(duration)}"
            f" ({_throughput(summary, duration):.1f} req/s)",
        ),
        (
            "outcomes",
            ", ".join(
                f"{summary.get(name, 0)} {name}"
                for name in ("ok", "failed", "skipped", "malformed")
            ),
        ),
        ("errors", _errors_text(summary.get("errors_by_class") or {})),
    ]
    job = summary.get("job")
    if job:
        runs = summary.get("runs") or 1
        rows.append(
            (
                "job",
                f"{job['ok']} of {job['lines']} lines ok, {job['failed']} failed, {job['not_run']} not run"
                + (f", {job['bad']} bad (skipped)" if job.get("bad") else "")
                + (f" (after {runs} runs)" if runs > 1 else "")
                + ("; run the same command again to send the rest" if job["not_run"] else ""),
            )
        )
    latency = summary.get("latency") or {}
    if latency:
        rows.append(
            (
                "latency",
                ", ".join(
                    f"{name} {_latency(float(latency[name]))}"
                    for name in ("p50", "p90", "p99", "max")
                    if name in latency
                ),
            )
        )
    if summary.get("circuit_state"):
        rows.append(("circuit", str(summary["circuit_state"])))
    for label, field in (
        ("results", "output"),
        ("report (JSON)", "report_json"),
        ("report (HTML)", "report_html"),
    ):
        if summary.get(field):
            rows.append((label, str(summary[field])))
    return rows


# ---------------------------------------------------------------- rich views


def _progress_line(snapshot: Mapping[str, Any], total: int | None) -> Table:
    done = int(snapshot.get("done", 0))
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        ProgressBar(total=total, completed=done, width=40, pulse=total is None),
        Text(_done_of_total(done, total), style="bold"),
        Text(_percent(done, total)),
        Text(f"{float(snapshot.get('throughput_rps', 0.0)):.1f} req/s"),
        Text(f"ETA {_duration(snapshot.get('eta_s'))}"),
        Text(f"elapsed {_duration(snapshot.get('elapsed_s', 0.0))}", style="dim"),
        Text("STOPPING", style="bold yellow") if snapshot.get("stopping") else Text(""),
    )
    return grid


def _counts_table(snapshot: Mapping[str, Any]) -> Table:
    state = str(snapshot.get("circuit_state", "CLOSED"))
    table = Table(show_header=False, box=None, padding=(0, 1))
    for name, style in (
        ("ok", "green"),
        ("failed", "red"),
        ("skipped", "dim"),
        ("malformed", "magenta"),
    ):
        table.add_row(Text(name), Text(str(snapshot.get(name, 0)), style=style))
    table.add_row(Text("in flight"), Text(str(snapshot.get("in_flight", 0))))
    table.add_row(Text("queued"), Text(str(snapshot.get("queued", 0))))
    table.add_row(Text("circuit"), Text(state, style=CIRCUIT_STYLES.get(state, "")))
    return table


def _errors_table(errors: Mapping[str, int]) -> Table:
    table = Table("error", "count", box=None, padding=(0, 1), header_style="bold")
    ranked = sorted(errors.items(), key=lambda item: (-item[1], item[0]))
    for name, count in ranked[:MAX_ERROR_CLASSES_SHOWN]:
        table.add_row(Text(name, style="red"), Text(str(count)))
    if len(ranked) > MAX_ERROR_CLASSES_SHOWN:
        table.add_row(Text(f"+{len(ranked) - MAX_ERROR_CLASSES_SHOWN} more", style="dim"), Text(""))
    return table


def _keys_table(keys: Mapping[str, Mapping[str, Any]]) -> Table:
    table = Table(
        "key", "in flight", "requests", "429s", box=None, padding=(0, 1), header_style="bold"
    )
    names = sorted(keys)
    for name in names[:MAX_KEYS_SHOWN]:
        figures = keys[name]
        table.add_row(
            Text(name),
            *(
                Text(str(figures.get(field, 0)))
                for field in ("in_flight", "requests", "rate_limited")
            ),
        )
    if len(names) > MAX_KEYS_SHOWN:
        table.add_row(
            Text(f"+{len(names) - MAX_KEYS_SHOWN} more", style="dim"), Text(""), Text(""), Text("")
        )
    return table


def live_view(snapshot: Mapping[str, Any], total: int | None, notes: Iterable[str]) -> Group:
    """The live view of one snapshot: progress line, figures side by side, latest notes."""
    figures = Table.grid(padding=(0, 4))
    columns = [_counts_table(snapshot)]
    if snapshot.get("errors_by_class"):
        columns.append(_errors_table(snapshot["errors_by_class"]))
    if snapshot.get("keys"):
        columns.append(_keys_table(snapshot["keys"]))
    figures.add_row(*columns)
    return Group(
        _progress_line(snapshot, total), figures, *(Text(note, style="dim") for note in notes)
    )


def _summary_table(summary: Mapping[str, Any]) -> Table:
    title = f"Run {summary.get('stopped') or 'finished'}"
    table = Table(title=title, show_header=False, title_justify="left", padding=(0, 1))
    for label, value in summary_lines(summary):
        if label == "status":
            continue
        style = CIRCUIT_STYLES.get(value, "") if label == "circuit" else ""
        table.add_row(Text(label, style="bold"), Text(value, style=style))
    return table


# ---------------------------------------------------------------- displays


def _stderr() -> TextIO:
    return sys.stderr


class RichDisplay:
    """A ``rich.live.Live`` view redrawn at most every :data:`RICH_REFRESH_INTERVAL_S`.

    The view disappears on :meth:`finish`, replaced by a summary table, the
    report paths and the latest notes.  Redraws happen in :meth:`update` and
    :meth:`note` (no refresh thread); :attr:`renders` counts them.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        clock: Clock = time.monotonic,
        refresh_interval: float = RICH_REFRESH_INTERVAL_S,
    ) -> None:
        own_console = console is None
        self._console = console if console is not None else Console(stderr=True)
        self._clock = clock
        self._interval = _positive("refresh_interval", refresh_interval)
        self._notes: deque[str] = deque(maxlen=NOTES_SHOWN)
        self._snapshot: Mapping[str, Any] = {}
        self._total: int | None = None
        self._last_render: float | None = None
        self._renders = 0
        self._started = False
        self._finished = False
        # Other stderr writes (warnings, logging) go above the view only when
        # the view owns stderr; stdout is never redirected: results may go there.
        self._live = Live(
            console=self._console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=own_console,
        )

    @property
    def renders(self) -> int:
        """How many times the live view has been drawn."""
        return self._renders

    def start(self, total: int | None) -> None:
        if self._started or self._finished:
            return
        self._total = total
        self._started = True
        self._live.start()
        self._render(self._clock())

    def update(self, snapshot: Mapping[str, Any]) -> None:
        self._snapshot = snapshot
        self._maybe_render()

    def note(self, message: str) -> None:
        if (
            not self._started
        ):  # said before the run (its target, say): printed at once, above where the view will be
            self._console.print(Text(str(message)))
            return
        self._notes.append(str(message))
        self._maybe_render()

    def finish(self, summary: Mapping[str, Any]) -> None:
        if self._finished:
            return
        self._finished = True
        self._live.stop()
        self._console.print(_summary_table(summary))
        if self._notes:
            self._console.print(Text("latest notes:", style="bold"))
            for note in self._notes:
                self._console.print(Text(f"  {note}", style="dim"))

    def _maybe_render(self) -> None:
        now = self._clock()
        if self._last_render is None or now - self._last_render >= self._interval:
            self._render(now)

    def _render(self, now: float) -> None:
        if not self._started or self._finished:
            return
        total = self._snapshot.get("total")
        view = live_view(self._snapshot, total if total is not None else self._total, self._notes)
        self._live.update(view, refresh=True)
        self._last_render = now
        self._renders += 1


class QuietDisplay:
    """Silent while running, except one line per note; a few plain lines at the end."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else _stderr()

    def start(self, total: int | None) -> None:
        """Nothing to show."""

    def update(self, snapshot: Mapping[str, Any]) -> None:
        """Nothing to show."""

    def note(self, message: str) -> None:
        self._write(f"{message}\n")

    def finish(self, summary: Mapping[str, Any]) -> None:
        self._write("".join(f"{label}: {value}\n" for label, value in summary_lines(summary)))

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


class JsonLogDisplay:
    """One JSON object per line: ``progress`` at most every ``interval`` s, ``note``, ``summary``.

    Each line is flushed at once.  The ``event`` field always names the event,
    whatever the snapshot holds; values JSON cannot hold are written as strings.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interval: float = DEFAULT_JSON_INTERVAL_S,
        clock: Clock = time.monotonic,
    ) -> None:
        self._stream = stream if stream is not None else _stderr()
        self._interval = _positive("interval", interval)
        self._clock = clock
        self._last_progress: float | None = None

    def start(self, total: int | None) -> None:
        """Nothing written: the first update writes the first progress line."""

    def update(self, snapshot: Mapping[str, Any]) -> None:
        now = self._clock()
        if self._last_progress is not None and now - self._last_progress < self._interval:
            return
        self._last_progress = now
        self._emit("progress", snapshot)

    def note(self, message: str) -> None:
        self._emit("note", {"message": str(message)})

    def finish(self, summary: Mapping[str, Any]) -> None:
        self._emit("summary", summary)

    def _emit(self, event: str, fields: Mapping[str, Any]) -> None:
        record = {"event": event}
        record.update((key, value) for key, value in fields.items() if key != "event")
        self._stream.write(json.dumps(record, default=str) + "\n")
        self._stream.flush()


# ---------------------------------------------------------------- factory


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SettingError(name, value, "a positive number of seconds")
    return float(value)


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def make_display(
    mode: str,
    *,
    stream: TextIO | None = None,
    interval: float = DEFAULT_JSON_INTERVAL_S,
    console: Console | None = None,
    clock: Clock | None = None,
) -> Display:
    """The display for ``mode`` (one of :data:`MODES`).

    ``stream`` (default stderr) is where quiet and JSON output go, and what
    ``auto`` tests for a TTY; ``console`` is the rich console (default one
    on stderr, or on ``stream`` when given); ``interval`` spaces JSON
    progress lines; ``clock`` (default ``time.monotonic``) times the
    throttling.  An unknown mode raises ``ValueError`` naming the modes.
    """
    if mode not in MODES:
        raise ValueError(f"unknown display mode {mode!r}: expected one of {', '.join(MODES)}")
    interval = _positive("interval", interval)
    clock = clock if clock is not None else time.monotonic
    if mode == "auto":
        target = (
            stream if stream is not None else (console.file if console is not None else _stderr())
        )
        mode = "rich" if _is_tty(target) else "quiet"
    if mode == "rich":
        if console is None and stream is not None:
            console = Console(file=stream)
        return RichDisplay(console, clock=clock)
    if mode == "quiet":
        return QuietDisplay(stream)
    return JsonLogDisplay(stream, interval=interval, clock=clock)
