"""The bulk runner's displays: rich live view, quiet, JSON lines; fake clock, no sleeping."""

from __future__ import annotations

import io
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from ipfs_accelerate_py.resilience.clock import FakeClock
from ipfs_accelerate_py.resilience.errors import SettingError
from ipfs_accelerate_py.runner.progress import (
    MODES,
    JsonLogDisplay,
    QuietDisplay,
    RichDisplay,
    make_display,
    summary_lines,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

SNAPSHOT = {
    "elapsed_s": 12.3,
    "total": 1000,
    "done": 420,
    "ok": 415,
    "failed": 5,
    "skipped": 100,
    "malformed": 2,
    "in_flight": 64,
    "queued": 10,
    "throughput_rps": 34.1,
    "eta_s": 17.0,
    "errors_by_class": {"RateLimitError": 3, "ServerError": 2},
    "circuit_state": "HALF_OPEN",
    "keys": {
        "alpha-key": {"in_flight": 30, "requests": 210, "rate_limited": 1},
        "beta-key": {"in_flight": 34, "requests": 205, "rate_limited": 0},
    },
    "stopping": False,
}

SUMMARY = dict(
    SNAPSHOT,
    done=1000,
    ok=990,
    failed=10,
    in_flight=0,
    queued=0,
    circuit_state="CLOSED",
    output="out/results.jsonl",
    report_json="out/report.json",
    report_html="out/report.html",
    duration_s=29.3,
    latency={"p50": 0.12, "p90": 0.4, "p99": 1.5, "max": 3.2},
    stopped=None,
)


def rich_console(**options) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=120, **options)


def plain(console: Console) -> str:
    return ANSI.sub("", console.file.getvalue())


def rich_display(clock: FakeClock, console: Console = None) -> RichDisplay:
    return RichDisplay(console if console is not None else rich_console(), clock=clock.now)


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


class FlushCounter(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


# ---------------------------------------------------------------- rich


def test_rich_view_shows_progress_errors_circuit_and_keys():
    console, clock = rich_console(), FakeClock()
    display = rich_display(clock, console)
    display.start(1000)
    clock.advance(1)
    display.update(SNAPSHOT)
    text = plain(console)
    for expected in (
        "420/1000",
        "42%",
        "34.1 req/s",
        "ETA 0:17",
        "elapsed 0:12",
        "RateLimitError",
        "ServerError",
        "HALF_OPEN",
        "alpha-key",
        "beta-key",
    ):
        assert expected in text, expected
    assert "STOPPING" not in text


def test_rich_view_with_unknown_total_and_stopping():
    console, clock = rich_console(), FakeClock()
    display = rich_display(clock, console)
    display.start(None)
    clock.advance(1)
    display.update(dict(SNAPSHOT, total=None, eta_s=None, stopping=True))
    text = plain(console)
    assert "420/?" in text and "ETA --:--" in text and "STOPPING" in text


def test_rich_view_uses_the_start_total_while_snapshots_have_none():
    console, clock = rich_console(), FakeClock()
    display = rich_display(clock, console)
    display.start(500)
    clock.advance(1)
    display.update({"done": 7})
    assert "7/500" in plain(console)


@pytest.mark.parametrize(
    "state, sgr",
    [("CLOSED", "\x1b[32mCLOSED"), ("HALF_OPEN", "\x1b[33mHALF_OPEN"), ("OPEN", "\x1b[1;31mOPEN")],
)
def test_rich_circuit_state_is_coloured(state, sgr):
    console, clock = rich_console(color_system="standard"), FakeClock()
    display = rich_display(clock, console)
    display.start(10)
    clock.advance(1)
    display.update(dict(SNAPSHOT, circuit_state=state))
    assert sgr in console.file.getvalue()


def test_rich_redraws_at_most_eight_times_a_second():
    clock = FakeClock()
    display = rich_display(clock)
    display.start(10_000)
    assert display.renders == 1
    for done in range(1024):  # one second in steps of 1/1024 s (exact in binary)
        clock.advance(1 / 1024)
        display.update(dict(SNAPSHOT, done=done))
    assert display.renders == 1 + 8


def test_rich_updates_at_one_instant_draw_once():
    clock = FakeClock()
    display = rich_display(clock)
    display.start(10)
    for done in range(500):
        display.update(dict(SNAPSHOT, done=done))
    assert display.renders == 1


def test_rich_skipped_snapshot_is_drawn_by_the_next_update_after_the_window():
    console, clock = rich_console(), FakeClock()
    display = rich_display(clock, console)
    display.start(1000)
    display.update(dict(SNAPSHOT, done=111))
    assert "111/1000" not in plain(console)
    clock.advance(0.2)
    display.update(dict(SNAPSHOT, done=222))
    assert "222/1000" in plain(console) and "111/1000" not in plain(console)


def test_rich_shows_the_last_three_notes_literally():
    console, clock = rich_console(), FakeClock()
    display = rich_display(clock, console)
    display.start(10)
    for n in range(1, 4):
        clock.advance(1)
        display.note(f"note {n}")
    before = len(console.file.getvalue())
    clock.advance(1)
    display.note("line 17: [bold]not JSON[/bold] (skipped)")
    latest_frame = ANSI.sub("", console.file.getvalue()[before:])
    assert "note 1" not in latest_frame
    assert "note 2" in latest_frame and "note 3" in latest_frame
    assert "line 17: [bold]not JSON[/bold] (skipped)" in latest_frame


def test_rich_finish_prints_summary_and_report_paths_then_draws_no_more():
    console, clock = rich_console(), FakeClock()
    display = rich_display(clock, console)
    display.start(1000)
    display.note("Ctrl-C: no new requests")
    display.finish(dict(SUMMARY, stopped="interrupted"))
    renders = display.renders
    clock.advance(1)
    display.update(SNAPSHOT)
    assert display.renders == renders
    text = plain(console)
    for expected in (
        "Run interrupted",
        "1000/1000 done in 0:29",
        "990 ok",
        "10 failed",
        "p50 120 ms",
        "max 3.20 s",
        "out/results.jsonl",
        "out/report.json",
        "out/report.html",
        "Ctrl-C: no new requests",
    ):
        assert expected in text, expected


@pytest.mark.parametrize("mode", ["rich", "quiet", "json"])
def test_finish_without_start_or_update(mode):
    stream = io.StringIO()
    console = rich_console() if mode == "rich" else None
    display = make_display(mode, stream=stream, console=console)
    display.finish({})
    output = stream.getvalue() + (plain(console) if console else "")
    assert "0/?" in output or json.loads(output) == {"event": "summary"}


def test_rich_finish_after_start_without_update():
    console = rich_console()
    display = make_display("rich", console=console, clock=FakeClock().now)
    display.start(3)
    display.finish({"total": 3, "duration_s": 0.5})
    assert "0/3 done in 0:00" in plain(console)


def test_rich_writes_to_stderr_by_default(capsys):
    display = make_display("rich")
    display.start(2)
    display.update(dict(SNAPSHOT, total=2, done=2))
    display.finish(dict(SUMMARY, total=2, done=2))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Run finished" in captured.err and "out/report.html" in captured.err


# ---------------------------------------------------------------- quiet


def test_quiet_prints_only_notes_while_running_then_a_short_summary():
    stream = io.StringIO()
    display = QuietDisplay(stream)
    display.start(1000)
    for _ in range(100):
        display.update(SNAPSHOT)
    assert stream.getvalue() == ""
    display.note("line 17: not JSON (skipped)")
    assert stream.getvalue() == "line 17: not JSON (skipped)\n"
    display.finish(SUMMARY)
    lines = stream.getvalue().splitlines()[1:]
    assert 3 <= len(lines) <= 10
    text = "\n".join(lines)
    assert "status: finished" in text
    assert "990 ok, 10 failed, 100 skipped, 2 malformed" in text
    assert "RateLimitError 3, ServerError 2" in text
    assert "out/results.jsonl" in text and "out/report.json" in text and "out/report.html" in text


def test_quiet_writes_to_stderr_by_default(capsys):
    display = make_display("quiet")
    display.note("hello")
    display.finish(SUMMARY)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("hello\n")


# ---------------------------------------------------------------- json


def test_json_lines_have_the_right_events_and_respect_the_interval():
    stream, clock = FlushCounter(), FakeClock()
    display = JsonLogDisplay(stream, interval=1.0, clock=clock.now)
    display.start(1000)
    for step in (0.0, 0.5, 0.49, 0.01, 0.5, 0.7):  # at 0, 0.5, 0.99, 1.0, 1.5, 2.2
        clock.advance(step)
        display.update(dict(SNAPSHOT, elapsed_s=clock.now()))
    display.note("line 3: not JSON (skipped)")
    display.finish(SUMMARY)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["progress"] * 3 + ["note", "summary"]
    assert [r["elapsed_s"] - 1000.0 for r in records[:3]] == pytest.approx([0.0, 1.0, 2.2])
    assert records[0]["errors_by_class"] == SNAPSHOT["errors_by_class"]
    assert records[3] == {"event": "note", "message": "line 3: not JSON (skipped)"}
    assert records[4]["report_html"] == "out/report.html" and records[4]["latency"]["p99"] == 1.5
    assert stream.flushes == len(records)


def test_json_event_field_cannot_be_overwritten_and_odd_values_become_strings():
    stream = io.StringIO()
    display = JsonLogDisplay(stream, clock=FakeClock().now)
    display.update({"event": "spoof", "output": pytest})
    record = json.loads(stream.getvalue())
    assert record["event"] == "progress" and "pytest" in record["output"]


@settings(max_examples=50, deadline=None)
@given(
    steps=st.lists(st.floats(min_value=0, max_value=2), max_size=60),
    interval=st.floats(min_value=0.05, max_value=3),
)
def test_json_progress_lines_are_never_closer_than_interval(steps, interval):
    stream, clock = io.StringIO(), FakeClock()
    display = JsonLogDisplay(stream, interval=interval, clock=clock.now)
    emitted_at = []
    for step in steps:
        clock.advance(step)
        before = stream.tell()
        display.update({"done": 1})
        if stream.tell() != before:
            emitted_at.append(clock.now())
    assert all(b - a >= interval for a, b in zip(emitted_at, emitted_at[1:], strict=False))
    if steps:
        assert emitted_at and emitted_at[0] == 1000.0 + steps[0]


# ---------------------------------------------------------------- factory


@pytest.mark.parametrize(
    "mode, stream, expected",
    [
        ("auto", io.StringIO(), QuietDisplay),
        ("auto", TtyStringIO(), RichDisplay),
        ("rich", io.StringIO(), RichDisplay),
        ("quiet", TtyStringIO(), QuietDisplay),
        ("json", TtyStringIO(), JsonLogDisplay),
    ],
)
def test_make_display_picks_the_implementation(mode, stream, expected):
    assert type(make_display(mode, stream=stream)) is expected


def test_auto_on_a_tty_renders_to_that_stream():
    stream, clock = TtyStringIO(), FakeClock()
    display = make_display("auto", stream=stream, clock=clock.now)
    display.start(5)
    clock.advance(1)
    display.update({"total": 5, "done": 4})
    assert "4/5" in ANSI.sub("", stream.getvalue())


def test_make_display_passes_interval_and_clock_to_json():
    stream, clock = io.StringIO(), FakeClock()
    display = make_display("json", stream=stream, interval=5, clock=clock.now)
    for _ in range(4):
        display.update({"done": 1})
        clock.advance(2)
    assert len(stream.getvalue().splitlines()) == 2  # at 0 and 6


def test_unknown_mode_names_the_modes():
    with pytest.raises(ValueError) as caught:
        make_display("fancy")
    message = str(caught.value)
    assert "fancy" in message and all(mode in message for mode in MODES)


@pytest.mark.parametrize("interval", [0, -1, "1", None, True, float("nan")])
def test_invalid_interval_is_refused(interval):
    with pytest.raises(SettingError) as caught:
        make_display("json", stream=io.StringIO(), interval=interval)
    assert caught.value.setting == "interval"


# ---------------------------------------------------------------- summary rows


@pytest.mark.parametrize(
    "summary, label, expected",
    [
        (
            {"done": 10, "total": 10, "duration_s": 3725},
            "requests",
            "10/10 done in 1:02:05 (0.0 req/s)",
        ),
        (
            {"done": 10, "duration_s": 4.0, "throughput_rps": None},
            "requests",
            "10/? done in 0:04 (2.5 req/s)",
        ),
        ({"elapsed_s": 59.6, "done": 0}, "requests", "0/? done in 1:00 (0.0 req/s)"),
        ({"stopped": "interrupted"}, "status", "stopped: interrupted"),
        ({"target": "openai at 127.0.0.1:8000"}, "target", "openai at 127.0.0.1:8000"),
        (
            {"job": {"lines": 10, "ok": 4, "failed": 1, "not_run": 5}, "runs": 2},
            "job",
            "4 of 10 lines ok, 1 failed, 5 not run (after 2 runs); run the same command again to send the rest",
        ),
        (
            {"job": {"lines": 3, "ok": 3, "failed": 0, "not_run": 0}, "runs": 1},
            "job",
            "3 of 3 lines ok, 0 failed, 0 not run",
        ),
        ({"errors_by_class": {"B": 1, "A": 1, "C": 5}}, "errors", "C 5, A 1, B 1"),
        ({}, "errors", "none"),
        ({"latency": {"p50": 0.0004, "max": 12}}, "latency", "p50 0 ms, max 12.00 s"),
    ],
)
def test_summary_lines(summary, label, expected):
    assert dict(summary_lines(summary))[label] == expected


def test_summary_lines_leave_out_missing_paths_and_latency():
    labels = [label for label, _ in summary_lines({"done": 1})]
    assert labels == ["status", "requests", "outcomes", "errors"]


def test_a_rich_note_before_the_view_starts_is_printed_at_once():
    console = Console(file=io.StringIO(), width=200)
    display = RichDisplay(console)
    display.note("target: openai at 127.0.0.1:8000")
    assert "target: openai at 127.0.0.1:8000" in console.file.getvalue()
    assert display.renders == 0  # printed, not drawn into a view that does not exist yet
