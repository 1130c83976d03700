"""``benchmarks/memory.py --quick`` runs end to end and writes the benchmark JSON contract.

Only what the scenario promises is asserted (the queue held N, the close
failed every queued request, memory per request is positive and about the
same at N and N/10, and comes back after the close); the byte figures
themselves are never pinned here.
"""

from __future__ import annotations

import json

import pytest

from ..helpers import quick_benchmark

pytestmark = pytest.mark.bench  # a step of its own in .ci/run: python -m pytest -m bench -n 0

RUN_TIMEOUT = 120
QUICK_SIZES = [1_000, 10_000]
LINEAR_TOLERANCE = 0.2  # bytes per request at N/10 within 20% of those at N
LEAK_SHARE = 0.02  # tracemalloc after close within 2% of what the queue took


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    return quick_benchmark(tmp_path_factory, "memory.py", RUN_TIMEOUT)


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_quick_run_follows_the_contract_and_frees_the_queue(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = json.loads(out.read_text())
    assert document["scenario"] == "memory"
    assert document["title"] and document["description"] and document["findings"]
    table = document["tables"][0]
    assert table["columns"][0] == "contender" and table["rows"]
    assert [row[1] for row in table["rows"]] == QUICK_SIZES
    assert all(row[0] == "ours" and row[2] > 0 and row[3] > 0 for row in table["rows"])
    plot = document["plots"][0]
    assert plot["kind"] == "bar" and set(plot["series"]) == {"tracemalloc", "RSS"}
    assert all(len(points) == len(QUICK_SIZES) for points in plot["series"].values())

    runs = document["config"]["runs"]
    for n in QUICK_SIZES:
        for measure in ("tracemalloc", "rss"):
            run = runs[f"{n}/{measure}"]
            assert run["queued"] == n and run["in_flight"] == 1
            assert all(cycle["shutdown_errors"] == n for cycle in run["cycles"])
        traced = runs[f"{n}/tracemalloc"]
        taken = traced["queued_bytes"] - traced["baseline_bytes"]
        assert abs(traced["after_close_above_baseline_bytes"]) < LEAK_SHARE * taken
    small, big = (runs[f"{n}/tracemalloc"]["bytes_per_request"] for n in QUICK_SIZES)
    assert abs(small / big - 1) < LINEAR_TOLERANCE
