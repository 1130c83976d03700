"""The bulk runner's report: the JSON document, the HTML page, the files (the plots: test_runner_plots)."""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser

import pytest

from ipfs_accelerate_py.runner.plots import PLOT_TITLES
from ipfs_accelerate_py.runner.report import (
    MAX_MALFORMED_LINES,
    build_report,
    looks_secret,
    render_html,
    write_reports,
)

SECRET = "sk-secret-123456"
VOID_TAGS = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


def full_run() -> dict:
    """A run as the orchestrator hands it over, every part present."""
    return {
        "command": "ipfs-accelerate run examples/jobs.jsonl --api openai --out results.jsonl",
        "api": "openai",
        "base_url": "http://127.0.0.1:1234/v1",
        "input": "examples/jobs.jsonl",
        "output": "results.jsonl",
        "started_at": 1764390000.0,
        "finished_at": 1764390042.5,
        "duration_s": 42.5,
        "stopped": None,
        "totals": {
            "lines": 1000,
            "skipped": 100,
            "submitted": 890,
            "ok": 880,
            "failed": 8,
            "interrupted": 2,
            "malformed": 10,
        },
        "throughput_rps": 20.9,
        "latency": {
            "count": 888,
            "mean": 0.21,
            "p50": 0.18,
            "p90": 0.35,
            "p99": 0.9,
            "max": 1.4,
            "histogram": [
                [0.001, 0],
                [0.002, 5],
                [0.01, 80],
                [0.1, 400],
                [0.2, 300],
                [1.0, 100],
                [2.0, 3],
            ],
        },
        "timeline": [[second, 20 + second % 7] for second in range(43)],
        "errors_by_class": {"RateLimitError": 3, "ServerError": 5},
        "keys": {
            "key1": {"requests": 450, "successes": 446, "failures": 4, "rate_limited": 3},
            "key2": {"requests": 440, "successes": 434, "failures": 6, "rate_limited": 0},
        },
        "circuit": {"state": "CLOSED", "times_opened": 1},
        "malformed_lines": [
            [17, "not JSON: Expecting value"],
            [42, "no 'messages', 'input' or 'prompt'"],
        ],
        "settings": {"max_concurrent_requests": 16, "batching_enabled": True},
        "client_stats": {"total_requests": 890, "circuit_state": "CLOSED"},
    }


class TagChecker(HTMLParser):
    """Every element closed in order (void ones excepted); counts ``<svg>`` opened and closed."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.svg_opened = self.svg_closed = 0

    def handle_starttag(self, tag, attrs):
        self.svg_opened += tag == "svg"
        if tag not in VOID_TAGS:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass  # <rect .../> opens and closes itself

    def handle_endtag(self, tag):
        self.svg_closed += tag == "svg"
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> while open: {self.stack[-3:]}")
        else:
            self.stack.pop()


def check_well_formed(page: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.problems == []
    assert checker.stack == []
    assert checker.svg_opened == checker.svg_closed
    assert page.startswith("<!DOCTYPE html>")
    return checker


def no_data_notes(page: str) -> int:
    return page.count('<p class="no-data">No data')


def svg_of(page: str, title: str) -> str:
    """The ``<svg>`` drawn under the heading ``title``."""
    match = re.search(rf"<h2>{re.escape(title)}</h2>\s*(<svg.*?</svg>)", page, re.S)
    assert match, title
    return match.group(1)


# ---------------------------------------------------------------- build_report


EMPTY_REPORT = {
    "command": "",
    "api": "",
    "base_url": "",
    "input": "",
    "output": "",
    "started_at": None,
    "finished_at": None,
    "duration_s": 0.0,
    "stopped": None,
    "totals": {
        "lines": 0,
        "skipped": 0,
        "submitted": 0,
        "ok": 0,
        "failed": 0,
        "interrupted": 0,
        "malformed": 0,
    },
    "throughput_rps": 0.0,
    "latency": {
        "count": 0,
        "mean": 0.0,
        "p50": 0.0,
        "p90": 0.0,
        "p99": 0.0,
        "max": 0.0,
        "histogram": [],
    },
    "timeline": [],
    "errors_by_class": {},
    "keys": {},
    "circuit": {"state": "", "times_opened": 0},
    "malformed_lines": [],
    "settings": {},
    "client_stats": {},
    "success_rate": 0.0,
    "runs": [],
    "target": {},
    "keys_disabled": {},
}


def test_an_empty_run_gets_every_part_with_empty_values():
    assert build_report({}) == EMPTY_REPORT


def test_the_success_rate_covers_the_whole_job_not_only_what_this_run_sent():
    # a run stopped after its 10 lines all succeeded, 90 of the file never sent: 10 %, not 100 %
    report = build_report({"totals": {"ok": 10}, "job": {"lines": 100, "ok": 10, "not_run": 90}})
    assert report["success_rate"] == 10.0
    assert report["job"] == {"lines": 100, "ok": 10, "failed": 0, "not_run": 90, "bad": 0}
    assert "Not run yet" in render_html(report) and "90" in render_html(report)


def test_every_run_of_the_job_is_listed_with_how_it_ended():
    runs = [
        {
            "started_at": 1.0,
            "finished_at": 2.0,
            "duration_s": 1.0,
            "submitted": 5,
            "ok": 4,
            "interrupted": 1,
            "ended": "interrupted by SIGTERM",
            "exit_code": 143,
        },
        {"started_at": 3.0, "duration_s": 0.5, "submitted": 1, "ok": 1},
    ]
    report = build_report({"runs": runs})
    assert [r["ended"] for r in report["runs"]] == ["interrupted by SIGTERM", "finished"]
    assert report["runs"][1]["failed"] == 0 and report["runs"][0]["exit_code"] == 143
    page = render_html(report)
    assert "Runs of this job" in page and "interrupted by SIGTERM" in page
    with pytest.raises(TypeError, match="runs"):
        build_report({"runs": "yesterday"})


@pytest.mark.parametrize(
    "run, path, expected",
    [
        ({"totals": {"ok": 3}}, ("totals", "failed"), 0),
        ({"totals": {"ok": 3}}, ("totals", "ok"), 3),
        ({"latency": {"p50": 0.2}}, ("latency", "histogram"), []),
        ({"latency": {"p50": 0.2}}, ("latency", "p99"), 0.0),
        (
            {"keys": {"k1": {"requests": 5}}},
            ("keys", "k1"),
            {"requests": 5, "successes": 0, "failures": 0, "rate_limited": 0, "auth_failures": 0},
        ),
        ({"circuit": {"state": "OPEN"}}, ("circuit", "times_opened"), 0),
        ({"circuit": None}, ("circuit",), {"state": "", "times_opened": 0}),
        ({"stopped": "interrupted"}, ("stopped",), "interrupted"),
        ({"timeline": [(2, 5), (0, 1)]}, ("timeline",), [[0, 1], [2, 5]]),
        ({"throughput_rps": float("inf")}, ("throughput_rps",), 0.0),
        ({"totals": {"ok": 4.0}}, ("totals", "ok"), 4),
        ({"extra": {"kept": 1}}, ("extra",), {"kept": 1}),
    ],
)
def test_build_report_fills_what_is_missing_and_keeps_what_is_given(run, path, expected):
    value = build_report(run)
    for part in path:
        value = value[part]
    assert value == expected


@pytest.mark.parametrize(
    "ok, failed, expected",
    [(880, 8, 100 * 880 / 888), (0, 0, 0.0), (5, 0, 100.0), (0, 3, 0.0), (1, 1, 50.0)],
)
def test_success_rate_is_ok_over_finished_in_percent(ok, failed, expected):
    report = build_report({"totals": {"ok": ok, "failed": failed, "interrupted": 7}})
    assert report["success_rate"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "run, error, field",
    [
        ([("command", "x")], TypeError, "run"),
        ({"totals": {"ok": -1}}, ValueError, "totals.ok"),
        ({"totals": {"ok": 2.5}}, ValueError, "totals.ok"),
        ({"totals": {"ok": "many"}}, TypeError, "totals.ok"),
        ({"totals": {"ok": True}}, TypeError, "totals.ok"),
        ({"totals": [1, 2]}, TypeError, "totals"),
        ({"keys": {"k": {"failures": -2}}}, ValueError, "keys['k'].failures"),
        ({"timeline": [[1]]}, ValueError, "timeline"),
        ({"timeline": "0,1"}, TypeError, "timeline"),
        ({"latency": {"histogram": [[0.1, "x"]]}}, TypeError, "latency.histogram"),
        ({"duration_s": "42"}, TypeError, "duration_s"),
    ],
)
def test_build_report_names_the_field_it_refuses(run, error, field):
    with pytest.raises(error, match=re.escape(field)):
        build_report(run)


def test_build_report_leaves_its_input_alone_and_is_idempotent():
    run = full_run()
    run["settings"]["openai_api_key"] = SECRET
    original = copy.deepcopy(run)
    report = build_report(run)
    assert run == original
    assert build_report(report) == report
    report["totals"]["ok"] = 0
    assert run["totals"]["ok"] == 880


def test_malformed_lines_are_capped():
    lines = [[n, f"bad {n}"] for n in range(MAX_MALFORMED_LINES + 50)]
    report = build_report({"malformed_lines": lines, "totals": {"malformed": len(lines)}})
    assert report["malformed_lines"] == lines[:MAX_MALFORMED_LINES]
    assert f"first {MAX_MALFORMED_LINES} of {len(lines)}" in render_html(report)


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "settings",
    [
        {"openai_api_key": SECRET},
        {"api_key": SECRET},
        {"key": SECRET},
        {"OPENAI_API_KEY": SECRET},
        {"groq-api-key": SECRET},
        {"apiKey": SECRET},
        {"backend": {"nested": {"claude_api_key": SECRET}}},
        {"api_keys": [SECRET, "sk-other-654321"]},
        {"api_keys": {"primary": SECRET}},
        {"auth_token": SECRET},
    ],
)
def test_a_secret_in_settings_reaches_neither_output(settings, tmp_path):
    run = full_run()
    run["settings"].update(settings)
    write_reports(run, tmp_path / "r.json", tmp_path / "r.html")
    for name in ("r.json", "r.html"):
        assert SECRET not in (tmp_path / name).read_text(encoding="utf-8")
    assert SECRET not in json.dumps(build_report(run)) and SECRET not in render_html(run)
    assert build_report(run)["settings"]["max_concurrent_requests"] == 16


@pytest.mark.parametrize(
    "name, value, secret",
    [
        ("openai_api_key", SECRET, True),
        ("key", "123456789", True),
        ("key", "12345678", False),  # not longer than 8 characters: a key's name, not a key
        ("key", "key1", False),
        ("openai_api_key", None, False),
        ("max_tokens", "not-a-secret-at-all", False),
        ("monkey", SECRET, False),
        ("base_url", "http://127.0.0.1:1234/v1", False),
        ("keys", ["key1", "key2"], False),
    ],
)
def test_looks_secret(name, value, secret):
    assert looks_secret(name, value) is secret


def test_short_and_unrelated_settings_are_kept():
    settings = {"key": "key1", "max_retries": 3, "model": "gpt-4o-mini", "api_key": None}
    assert build_report({"settings": settings})["settings"] == settings


# ---------------------------------------------------------------- render_html


def test_a_full_run_draws_four_plots_in_a_well_formed_page():
    page = render_html(build_report(full_run()))
    checker = check_well_formed(page)
    assert checker.svg_opened == 4
    assert no_data_notes(page) == 0
    for title in PLOT_TITLES.values():
        assert f"<h2>{title}</h2>" in page
        assert f"<title>{title}</title>" in svg_of(page, title)
    assert "ipfs-accelerate run examples/jobs.jsonl --api openai --out results.jsonl" in page
    for figure in ("99.10 %", "20.9 requests/s", "42.5 s", "180 ms", "900 ms", "1.4 s", "CLOSED"):
        assert figure in page, figure


def test_an_empty_run_gives_a_note_per_plot_and_still_a_well_formed_page():
    page = render_html({})
    checker = check_well_formed(page)
    assert checker.svg_opened == 0
    assert no_data_notes(page) == 4
    for title in PLOT_TITLES.values():
        assert f"<h2>{title}</h2>" in page


@pytest.mark.parametrize(
    "plot, emptied",
    [
        ("latency", {"latency": {"count": 0}}),
        ("latency", {"latency": {"histogram": [[0.1, 0], [0.2, 0]]}}),
        ("throughput", {"timeline": []}),
        ("throughput", {"timeline": [[0, 0], [5, 0]]}),
        ("errors", {"errors_by_class": {}}),
        ("errors", {"errors_by_class": {"ServerError": 0}}),
        ("keys", {"keys": {}}),
        ("keys", {"keys": {"key1": {"requests": 0}}}),
    ],
)
def test_one_empty_plot_gives_its_note_and_leaves_the_others(plot, emptied):
    run = {**full_run(), **emptied}
    page = render_html(run)
    checker = check_well_formed(page)
    assert checker.svg_opened == 3
    assert no_data_notes(page) == 1
    assert re.search(rf"<h2>{PLOT_TITLES[plot]}</h2>\s*<p class=\"no-data\">", page)


def test_one_key_and_one_error_class_still_draw():
    run = {**full_run(), "keys": {"only": {"requests": 1}}, "errors_by_class": {"ServerError": 1}}
    page = render_html(run)
    assert check_well_formed(page).svg_opened == 4
    assert ">only<" in svg_of(page, PLOT_TITLES["keys"])


@pytest.mark.parametrize(
    "where, hostile",
    [
        ("error class", "<script>alert('x')</script>"),
        ("malformed reason", '<script>alert("x")</script>'),
        ("key name", "<script>k&y</script>"),
        ("command", "run <script>a.jsonl</script> && rm"),
        ("input path", "jobs<script>.jsonl"),
        ("setting", "<script>gpt-4o</script>"),
        ("circuit state", "<script>OPEN</script>"),
    ],
)
def test_every_string_from_the_data_is_escaped(where, hostile):
    run = full_run()
    if where == "error class":
        run["errors_by_class"][hostile] = 2
    elif where == "malformed reason":
        run["malformed_lines"].append([99, hostile])
    elif where == "key name":
        run["keys"][hostile] = {"requests": 3, "failures": 1}
    elif where == "command":
        run["command"] = hostile
    elif where == "input path":
        run["input"] = hostile
    elif where == "setting":
        run["settings"]["model"] = hostile
    else:
        run["circuit"]["state"] = hostile
    page = render_html(run)
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    check_well_formed(page)


def test_a_stopped_run_says_so():
    page = render_html({**full_run(), "stopped": "interrupted"})
    assert '<p class="banner">Stopped early: interrupted.' in page
    assert '<p class="banner">' not in render_html(full_run())


def test_a_long_timeline_keeps_the_page_small():
    page = render_html({**full_run(), "timeline": [[second, 20] for second in range(10_000)]})
    assert len(page) < 60_000
    assert "mean over 17 s" in svg_of(page, PLOT_TITLES["throughput"])


def test_the_latency_plot_sits_under_its_heading():
    histogram = [[0.001 * 10 ** (i / 10), 1000] for i in range(31)]  # 1 ms to 1 s
    svg = svg_of(
        render_html({"latency": {"histogram": [list(row) for row in reversed(histogram)]}}),
        PLOT_TITLES["latency"],
    )
    assert re.findall(r'text-anchor="middle">([^<]+)</text>', svg) == [
        "1 ms",
        "10 ms",
        "100 ms",
        "1 s",
    ]


# ---------------------------------------------------------------- files


def test_write_reports_writes_both_files_and_the_json_round_trips(tmp_path):
    run = full_run()
    run["keys"]["clé µ"] = {"requests": 1}
    json_path = tmp_path / "deep" / "er" / "report.json"
    html_path = tmp_path / "other" / "report.html"
    write_reports(build_report(run), json_path, str(html_path))
    text = json_path.read_text(encoding="utf-8")
    assert json.loads(text) == build_report(run)
    assert text.startswith('{\n  "command"')
    page = html_path.read_bytes().decode("utf-8")
    assert "clé µ" in page
    assert check_well_formed(page).svg_opened == 4
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "report.html",
        "report.json",
    ]


def test_write_reports_overwrites_a_previous_report(tmp_path):
    paths = (tmp_path / "r.json", tmp_path / "r.html")
    write_reports({"command": "first"}, *paths)
    write_reports({"command": "second"}, *paths)
    assert json.loads(paths[0].read_text(encoding="utf-8"))["command"] == "second"
    assert "second" in paths[1].read_text(encoding="utf-8")
