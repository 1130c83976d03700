"""benchmarks/batching.py runs end to end in --quick mode and writes the driver's JSON contract.

Only the harness and what the simulator counted are checked (every call
succeeds; batching on sends far fewer HTTP requests, each carrying several
inputs); throughput ratios are never asserted in tests.
"""

from __future__ import annotations

import json

import pytest

from ..helpers import quick_benchmark

pytestmark = pytest.mark.bench  # a step of its own in .ci/run: python -m pytest -m bench -n 0

RUN_TIMEOUT = 120
QUICK_CALLS = 200
MAX_BATCH_SIZE = 64
OURS = ("ours_batching_on", "ours_batching_off")
REQUIRED = (*OURS, "aiohttp")  # the openai SDK runs only where it is installed


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    return quick_benchmark(tmp_path_factory, "batching.py", RUN_TIMEOUT)


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_quick_run_follows_the_contract_and_batching_cuts_http_requests(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = json.loads(out.read_text())

    assert document["scenario"] == "batching"
    assert document["title"] and document["description"] and document["findings"]
    assert document["config"]["calls"] == QUICK_CALLS and document["config"]["quick"] is True
    [table] = document["tables"]
    columns = table["columns"]
    assert columns[0] == "contender"
    rows = {row[0]: dict(zip(columns, row, strict=True)) for row in table["rows"]}
    assert set(REQUIRED) <= set(rows)
    [plot] = document["plots"]
    assert plot["kind"] == "bar"
    bars = dict(plot["series"]["calls/s"])
    assert set(rows) == set(bars)

    for name in REQUIRED:
        row = rows[name]
        assert row["failed"] == 0, name
        assert row["calls/s"] > 0 and row["wall s"] > 0 and row["p50 ms"] > 0, name
        assert row["p99 ms"] >= row["p50 ms"], name
        assert bars[name] == row["calls/s"], name
    on, off = rows["ours_batching_on"], rows["ours_batching_off"]
    assert off["HTTP requests"] == QUICK_CALLS and off["inputs/HTTP call"] == 1
    assert QUICK_CALLS / MAX_BATCH_SIZE <= on["HTTP requests"] < QUICK_CALLS / 2
    assert on["inputs/HTTP call"] == pytest.approx(QUICK_CALLS / on["HTTP requests"])
    assert on["server peak in flight"] <= off["server peak in flight"] <= 32
