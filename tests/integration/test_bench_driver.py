"""``python -m benchmarks`` runs scenarios in their quick mode and writes
RESULTS.md (and PNG plots where matplotlib is installed).  Each scenario's
own quick test checks its figures; this checks the driver: where it writes
(never over the committed page from a quick or partial run), its exit status
(0 every target met, 2 one missed, 1 a scenario crashed), the scripts that
predate the common shape going through their adapters, a section per
scenario with its tables, and the plots there or said to be missing.

The tests that run scenarios are marked ``bench``; the pure ones (the
verdicts, the exit status, the choice of folder) are in the default suite."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks.__main__ as driver

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "benchmarks"
SCENARIOS = ("overhead-sync", "multiplexing", "memory")


def run_driver(*args: str, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def committed_files() -> dict:
    """The committed page and plots: path -> (mtime, sha256)."""
    paths = [COMMITTED / "RESULTS.md", *sorted((COMMITTED / "plots").glob("*"))]
    return {
        p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in paths
        if p.is_file()
    }


# ------------------------------------------------------------ pure: no scenario runs


def test_a_quick_or_partial_run_without_out_gets_a_new_temporary_folder(tmp_path):
    parser = driver.Parser()
    for argv in (["--quick"], ["--only", "memory"], ["--quick", "--only", "batching", "outage"]):
        args = argparse.Namespace(
            quick="--quick" in argv,
            only=argv[argv.index("--only") + 1 :] if "--only" in argv else None,
            out=None,
        )
        folder = driver.out_dir(parser, args)
        try:
            assert Path(folder).is_dir() and Path(folder).resolve() != COMMITTED.resolve()
            assert not any(Path(folder).iterdir())
        finally:
            shutil.rmtree(folder)
    full = argparse.Namespace(quick=False, only=None, out=None)
    assert driver.out_dir(parser, full) == driver.HERE
    given = argparse.Namespace(quick=True, only=None, out=str(tmp_path))
    assert driver.out_dir(parser, given) == str(tmp_path)


def test_a_quick_run_told_to_write_into_benchmarks_is_refused_before_anything_runs():
    before = committed_files()
    for args in (
        ["--quick", "--out", "benchmarks"],
        ["--only", "memory", "--out-dir", "benchmarks/"],
    ):
        proc = run_driver(*args, timeout=60)
        assert proc.returncode == driver.USAGE_ERROR, proc.stderr
        assert "never write over the committed" in proc.stderr
        assert "==" not in proc.stdout  # no scenario started
    assert committed_files() == before


def test_verdict_lines_of_both_target_shapes():
    ratio = driver.verdict(
        {
            "name": "ours/aiohttp",
            "concurrency": 64,
            "minimum": 0.5,
            "measured": 0.41,
            "passed": False,
        }
    )
    assert ratio == {
        "passed": False,
        "line": "FAIL: ours/aiohttp at concurrency 64 = 0.41 (target >= 0.5)",
    }
    named = driver.verdict(
        {
            "contender": "ours-round-robin",
            "name": "failed",
            "measured": 0,
            "target": "<= 0",
            "passed": True,
        }
    )
    assert named == {"passed": True, "line": "PASS: ours-round-robin failed = 0 (target <= 0)"}
    share = driver.verdict(
        {
            "contender": "ours-least-loaded",
            "name": "429 share",
            "measured": 0.241,
            "target": "< 2%",
            "passed": False,
        }
    )
    assert (
        share["line"] == "FAIL: ours-least-loaded 429 share = 24.1% (target < 2%)"
    )  # as multiplexing.py says it


@pytest.mark.parametrize("results, code", [
    ([{"scenario": "a", "exit_status": 0, "targets": [{"passed": True, "line": "PASS: x"}]}], 0),
    ([{"scenario": "a", "exit_status": 0, "targets": [{"passed": True, "line": "PASS: x"},
                                                       {"passed": False, "line": "FAIL: y"}]}], 2),
    ([{"scenario": "a", "exit_status": 0, "targets": [{"passed": False, "line": "FAIL: y"}]},
      {"scenario": "b", "error": "exited 1 after 3 s without figures"}], 1),
    ([{"scenario": "a", "exit_status": 1, "targets": []}], 1),  # figures, but the script says they mean little
    ([{"scenario": "a", "exit_status": None, "targets": []}], 1),  # stopped at the time cap
    ([{"scenario": "a", "exit_status": 0}], 0),  # a scenario without targets
])  # fmt: skip
def test_exit_status_crashed_beats_missed_beats_met(results, code, capsys):
    assert driver.exit_code(results) == code
    if code == 2:
        assert "1 of 2 targets missed" in capsys.readouterr().err


def test_the_multiplexing_table_is_per_client_and_per_run_with_no_total_over_the_rounds():
    from scenario_adapters import (
        adapt_multiplexing,  # benchmarks/ is on sys.path once the driver is imported
    )

    runs = [
        {"successes": 1200, "failed": 800},
        {"successes": 1000, "failed": 1000},
        {"successes": 1200, "failed": 800},
    ]
    document = {
        "config": {
            "requests": 2000,
            "concurrency": 64,
            "keys": 4,
            "rpm": 300.0,
            "ideal_per_min": 1200.0,
            "rounds": 3,
            "bound_s": 60.0,
            "budget_per_min": 2000.0,
            "skipped": [],
        },
        "contenders": {
            "peer": {
                "requests": 2000,
                "successes": 1200,
                "failed": 1000,
                "failed_median": 800,
                "goodput_per_min": 1200.0,
                "goodput_vs_budget": 0.6,
                "share_429": 0.0,
                "share_spread": 0.0,
                "client_cpu_ms_per_success": 6.5,
                "rounds": runs,
            }
        },
        "targets": [],
    }
    (table,) = adapt_multiplexing(document)["tables"]
    row = dict(zip(table["columns"], table["rows"][0], strict=True))
    assert row["requests"] == 2000 and row["succeeded"] == 1200  # a run's, not 6,000 and 3,400
    assert row["failed"] == 800 and row["failed, worst run"] == 1000
    assert row["budget /min"] == 2000.0 and row["goodput % of budget"] == 60.0
    assert row["429 share % (server)"] == 0.0


# ------------------------------------------------------------ bench: scenarios run


@pytest.mark.bench
@pytest.mark.timeout(400)
def test_python_m_benchmarks_writes_results_md_with_every_scenario(tmp_path):
    """The page, whatever the targets: on this two-core machine a quick run can miss
    one on rough figures, and the exit status then says 2 with the FAIL line
    printed; it must never say the run crashed."""
    pytest.importorskip("httpx")  # overhead-sync's raw httpx contender
    proc = run_driver("--quick", "--only", *SCENARIOS, "--out", str(tmp_path), timeout=380)
    assert proc.returncode in (0, 2), proc.stderr[-3000:]
    verdicts = re.findall(r"^(?:overhead-sync|multiplexing): (PASS|FAIL): ", proc.stdout, re.M)
    assert verdicts and ("FAIL" in verdicts) == (proc.returncode == 2)
    assert f"writing RESULTS.md and plots/ to {tmp_path}" in proc.stdout
    page = (tmp_path / "RESULTS.md").read_text()
    assert "Machine:" in page and "Versions:" in page and "quick mode" in page
    assert "Targets: " in page and page.count(": FAIL: ") == verdicts.count("FAIL")
    for name in SCENARIOS:
        assert f"## {name}" in page
    assert "No figures" not in page and "exited" not in page
    assert page.count("| contender |") >= 2  # the adapted tables of overhead-sync and multiplexing
    assert (
        "| contender | requests | succeeded | failed | failed, worst run | goodput /min | budget /min |"
        " goodput % of budget | 429 share % (server) |"
    ) in page  # multiplexing: per client, per run
    plots = (
        sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
        if (tmp_path / "plots").exists()
        else []
    )
    if importlib.util.find_spec("matplotlib"):
        assert any(p.startswith("overhead-sync") for p in plots) and any(
            p.startswith("multiplexing") for p in plots
        )
        assert "](plots/overhead-sync-1.png)" in page
    else:
        assert "matplotlib is not installed" in page and not plots


@pytest.mark.bench
@pytest.mark.timeout(120)
def test_a_quick_run_without_out_writes_a_temporary_folder_and_leaves_the_committed_page_alone():
    before = committed_files()
    assert COMMITTED / "RESULTS.md" in before
    proc = run_driver("--quick", "--only", "memory", timeout=100)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = Path(
        re.search(r"^writing RESULTS\.md and plots/ to (.+)$", proc.stdout, re.M).group(1)
    )
    try:
        assert folder.resolve() != COMMITTED.resolve()
        assert f"wrote {folder / 'RESULTS.md'}" in proc.stdout
        assert "## memory" in (folder / "RESULTS.md").read_text()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert committed_files() == before  # neither touched nor rewritten


@pytest.mark.bench
@pytest.mark.timeout(200)
def test_a_missed_target_exits_2_with_its_fail_line(tmp_path):
    """``BENCH_IMPOSSIBLE_TARGET=1`` makes overhead-sync's first target infinite:
    a missed target without waiting for a real one to be missed."""
    pytest.importorskip("httpx")
    proc = run_driver(
        "--quick",
        "--only",
        "overhead-sync",
        "--out",
        str(tmp_path),
        timeout=180,
        env={"BENCH_IMPOSSIBLE_TARGET": "1"},
    )
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "overhead-sync: FAIL: openai_api/httpx_threads at concurrency 64" in proc.stdout
    assert "(target >= inf)" in proc.stdout
    assert re.search(r"\d+ of \d+ targets missed", proc.stderr)
    page = (tmp_path / "RESULTS.md").read_text()
    assert re.search(r"Targets: \d+ of \d+ missed\.", page)
    assert "overhead-sync: FAIL: openai_api/httpx_threads at concurrency 64" in page
