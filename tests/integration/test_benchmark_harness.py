"""The overhead benchmark runs end to end in --quick mode and writes its figures.

Only the harness is checked here (it starts and stops the simulator, every
contender completes, the JSON holds positive figures); its timing targets
are never asserted in tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..helpers import quick_benchmark

pytest.importorskip("httpx")  # the benchmark's "bench" extra

CONTENDERS = ("aiohttp", "httpx_threads", "openai_api")
RUN_TIMEOUT = 120
POSITIVE_FIGURES = ("requests_per_s", "p50_ms", "p99_ms", "client_cpu_ms_per_request", "wall_s")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    return quick_benchmark(tmp_path_factory, "overhead.py", RUN_TIMEOUT)


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_quick_run_exits_zero_and_writes_json(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.exists()
    assert "ratios of requests/s" in proc.stdout


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_json_holds_every_contender_with_positive_figures(quick_run):
    _, out = quick_run
    document = json.loads(out.read_text())
    assert document["config"]["quick"] is True
    concurrencies = [str(c) for c in document["config"]["concurrency"]]
    assert concurrencies == ["1", "16", "64"]
    assert set(document["contenders"]) == set(CONTENDERS)
    for name in CONTENDERS:
        for c in concurrencies:
            figures = document["contenders"][name][c]
            for key in POSITIVE_FIGURES:
                assert figures[key] > 0, (name, c, key, figures[key])
            assert figures["server_cpu_utilisation"] >= 0
            assert figures["requests"] > 0


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_json_holds_ratios_and_target_verdicts(quick_run):
    _, out = quick_run
    document = json.loads(out.read_text())
    for c, pair in document["ratios"].items():
        for name in ("openai_api/httpx_threads", "openai_api/aiohttp"):
            assert pair[name]["ratio_of_medians"] > 0
    assert {t["name"] for t in document["targets"]} == {"openai_api/httpx_threads", "openai_api/aiohttp"}
    assert all(isinstance(t["passed"], bool) for t in document["targets"])


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_simulator_subprocess_is_gone_after_the_run(quick_run):
    proc, _ = quick_run
    pid = int(proc.stdout.split("(pid ", 1)[1].split(")", 1)[0])
    assert not Path(f"/proc/{pid}").exists(), "the simulator outlived the benchmark"
