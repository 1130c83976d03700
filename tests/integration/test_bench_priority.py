"""benchmarks/priority.py runs end to end in --quick mode and writes the driver's JSON contract.

Besides the harness, what the scenario promises is checked as an order, not
a timing target: under a full queue of LOW requests every request succeeds,
the backlog outlasts the HIGH stream, and HIGH requests overtake it (their
p99 below the backlog's, and below the same requests' sent at NORMAL).
"""

from __future__ import annotations

import json

import pytest

from ..helpers import quick_benchmark

pytestmark = pytest.mark.bench  # a step of its own in .ci/run: python -m pytest -m bench -n 0

RUN_TIMEOUT = 120
QUICK_LOW, QUICK_HIGH = 300, 20
REQUIRED = ("ours", "ours_no_priority")  # LiteLLM is left out of --quick


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    return quick_benchmark(tmp_path_factory, "priority.py", RUN_TIMEOUT)


def latency_rows(document: dict) -> dict:
    """``{(contender, class): row as a dict}`` from the latency table."""
    table = next(t for t in document["tables"] if t["title"].startswith("Latency per class"))
    columns = table["columns"]
    assert columns[:2] == ["contender", "class"]
    return {(row[0], row[1]): dict(zip(columns, row, strict=True)) for row in table["rows"]}


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_quick_run_follows_the_contract_and_high_overtakes_the_backlog(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = json.loads(out.read_text())

    assert document["scenario"] == "priority"
    assert document["title"] and document["description"] and document["findings"]
    config = document["config"]
    assert (config["low"], config["high"], config["quick"]) == (QUICK_LOW, QUICK_HIGH, True)
    rows = latency_rows(document)
    [plot] = document["plots"]
    assert plot["kind"] == "bar" and set(plot["series"]) == {"HIGH", "LOW"}
    bars = {cls: dict(points) for cls, points in plot["series"].items()}

    for name in REQUIRED:
        for cls, count in (("HIGH", QUICK_HIGH), ("LOW", QUICK_LOW)):
            row = rows[(name, cls)]
            assert row["requests"] == count and row["failed"] == 0, (name, cls)
            assert 0 < row["p50 ms"] <= row["p99 ms"] <= row["max ms"], (name, cls)
            assert bars[cls][name] == row["p99 ms"], (name, cls)
        assert min(document["contenders"][name]["low_after_last_high"]) > 0, (
            name
        )  # the backlog lasted

    high, low, flat_high = (
        rows[("ours", "HIGH")],
        rows[("ours", "LOW")],
        rows[("ours_no_priority", "HIGH")],
    )
    assert high["p99 ms"] < low["p99 ms"]
    assert high["p99 ms"] < flat_high["p99 ms"]
    waits = next(t for t in document["tables"] if t["title"].startswith("Queue wait"))
    assert {row[0] for row in waits["rows"]} == set(REQUIRED)
    assert all(
        row[1] == QUICK_LOW + QUICK_HIGH for row in waits["rows"]
    )  # the warm-up was forgotten
