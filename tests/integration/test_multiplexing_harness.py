"""The multiplexing benchmark runs end to end in --quick mode and writes its figures.

Only the harness is checked here (it starts and stops the simulator, every
contender completes a run, the JSON holds the figures); its targets are
never asserted in tests.  LiteLLM is the benchmark's optional dependency:
without it only our contenders are expected.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from ..helpers import quick_benchmark

pytestmark = pytest.mark.bench  # a step of its own in .ci/run: python -m pytest -m bench -n 0

RUN_TIMEOUT = 240
OURS = ("ours-least-loaded", "ours-round-robin")
LITELLM = ("litellm-least-busy", "litellm-usage-v2")
KEY_NAMES = {"key1", "key2", "key3", "key4"}
TARGETS = {
    "goodput",
    "failed",
    "key share spread",
    "vs bound",
}  # the 429 share is judged in full runs only


def expected_contenders() -> set:
    has_litellm = importlib.util.find_spec("litellm") is not None
    return set(OURS) | (set(LITELLM) if has_litellm else set())


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    return quick_benchmark(tmp_path_factory, "multiplexing.py", RUN_TIMEOUT)


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_quick_run_exits_zero_and_writes_json(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.exists()
    document = json.loads(out.read_text())
    assert document["config"]["quick"] is True
    assert document["config"]["keys"] == len(KEY_NAMES)
    config = document["config"]
    assert (
        config["bound_s"] > 0
        and config["budget_per_min"] == config["requests"] * 60.0 / config["bound_s"]
    )
    assert set(document["contenders"]) == expected_contenders()


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_every_contender_has_its_figures(quick_run):
    _, out = quick_run
    document = json.loads(out.read_text())
    requests = document["config"]["requests"]
    for name, figures in document["contenders"].items():
        assert figures["requests"] == requests, name
        assert figures["elapsed_s"] > 0, name
        assert figures["client_cpu_s"] > 0, name
        assert figures["goodput_per_min"] >= 0, name
        assert 0 <= figures["failed"] <= requests, name
        assert 0 <= figures["share_429"] <= 1, name
        assert 0 <= figures["failed_median"] <= figures["failed"], (
            name
        )  # the median and the worst run
        assert figures["successes"] + figures["failed"] == requests or len(figures["rounds"]) > 1, (
            name
        )
        # goodput never counts time saved by failing: at most the budget, the fixed windows' most
        assert 0 <= figures["goodput_vs_budget"] <= 1.05, name
        assert set(figures["key_shares"]) == KEY_NAMES, name
        assert figures["share_spread"] >= 0, name
        (run,) = figures["rounds"]
        assert run["successes"] + run["failed"] == requests, name
        assert run["attempts"] >= run["successes"], name
        assert run["share_429"] == (
            run["rate_limited"] / run["attempts"] if run["attempts"] else 0.0
        ), name
        assert set(run["attempts_by_key"]) == KEY_NAMES, name
        assert (
            math.isclose(sum(run["key_shares"].values()), 1.0, rel_tol=1e-9)
            or run["successes"] == 0
        )


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_our_contenders_get_requests_through_and_have_target_verdicts(quick_run):
    proc, out = quick_run
    document = json.loads(out.read_text())
    for name in OURS:
        assert document["contenders"][name]["rounds"][0]["successes"] > 0, name
    verdicts = {(t["contender"], t["name"]) for t in document["targets"]}
    assert verdicts == {(c, t) for c in OURS for t in TARGETS}
    assert all(isinstance(t["passed"], bool) for t in document["targets"])
    for t in document["targets"]:
        assert f"{t['contender']} {t['name']} = " in proc.stdout


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_simulator_subprocess_is_gone_after_the_run(quick_run):
    proc, _ = quick_run
    pid = int(proc.stdout.split("(pid ", 1)[1].split(")", 1)[0])
    assert not Path(f"/proc/{pid}").exists(), "the simulator outlived the benchmark"
