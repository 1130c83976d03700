"""benchmarks/outage.py runs end to end in --quick mode and writes figures in the common shape.

Only the harness and what the breaker promises are checked (ours keeps
succeeding outside the outage, sends the dead server a handful of requests
and fails the rest at once); how it compares with the peers is left to the
benchmark's own report.
"""

from __future__ import annotations

import json

import pytest

from ..helpers import quick_benchmark

pytestmark = pytest.mark.bench  # a step of its own in .ci/run: python -m pytest -m bench -n 0

RUN_TIMEOUT = 120
COLUMNS = [
    "contender",
    "on_circuit_open",
    "sent",
    "succeeded",
    "failed",
    "started during outage",
    "lost of those",
    "server saw during outage",
    "fail fast p50 ms",
    "recover s",
    "p99 ms outside outage",
]
FAIL_FAST_MS = 50.0  # generous: an OPEN circuit refuses in well under a millisecond
RECOVER_S = 3.0  # reset_timeout is 1 s: the first probe after the outage goes within it
SERVER_SHARE = 0.25  # of the requests offered during the outage, at most this many reach the server


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_quick_run_writes_the_common_shape_and_ours_fails_fast(tmp_path_factory):
    proc, out = quick_benchmark(tmp_path_factory, "outage.py", RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = json.loads(out.read_text())

    assert document["scenario"] == "outage"
    assert document["title"] and document["description"] and document["findings"]
    table = document["tables"][0]
    assert table["columns"] == COLUMNS and table["rows"]
    assert all(plot["series"] and plot["kind"] == "line" for plot in document["plots"])
    assert all(len(points) > 1 for points in document["plots"][0]["series"].values())

    ours = dict(zip(COLUMNS, next(row for row in table["rows"] if row[0] == "ours"), strict=True))
    config = document["config"]
    offered_in_outage = config["rate"] * config["outage_seconds"]
    assert ours["sent"] == config["rate"] * config["seconds"]
    assert ours["succeeded"] > 0 and ours["failed"] > 0
    assert ours["succeeded"] + ours["failed"] == ours["sent"]
    assert 0 < ours["server saw during outage"] <= SERVER_SHARE * offered_in_outage
    assert 0 < ours["fail fast p50 ms"] < FAIL_FAST_MS
    assert 0 <= ours["recover s"] < RECOVER_S
    assert ours["p99 ms outside outage"] > 0

    waited = dict(
        zip(COLUMNS, next(row for row in table["rows"] if row[0] == "ours_wait"), strict=True)
    )
    assert waited["sent"] == ours["sent"]
    assert (
        waited["failed"] < ours["failed"]
    )  # the outage is shorter than the deadline: waiting saves them
    # lost requests, shown for both circuit modes: fail-fast loses (nearly) every one started in the outage
    assert (ours["on_circuit_open"], waited["on_circuit_open"]) == ("fail", "wait")
    assert ours["started during outage"] == waited["started during outage"] == offered_in_outage
    assert (
        0 < ours["lost of those"] <= ours["started during outage"]
        and ours["lost of those"] <= ours["failed"]
    )
    assert 0 <= waited["lost of those"] < ours["lost of those"]
    peers = [
        dict(zip(COLUMNS, row, strict=True))
        for row in table["rows"]
        if not row[0].startswith("ours")
    ]
    assert all(
        p["on_circuit_open"] is None and 0 <= p["lost of those"] <= p["started during outage"]
        for p in peers
    )
    assert 0 < waited["server saw during outage"] <= SERVER_SHARE * offered_in_outage  # no polling
