"""The feature checks (``ipfs_accelerate_py.checks``) against the simulator, for real.

Each run starts simulators on loopback ports and takes about two seconds: the
checks wait on real latency, Retry-After and reset timeouts by design.  Those
waits are asleep, so every backend's run (and the root script's) goes side by
side once for the module (:func:`every_backend_checked`), each against an
embedded simulator of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ipfs_accelerate_py import checks
from ipfs_accelerate_py.simulator import Simulator

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "test_enhanced_api_features.py"
FEATURES = [
    "priority_queue",
    "circuit_breaker",
    "monitoring",
    "request_batching",
    "retry_after",
    "queue_full",
]
SECRET = "sk-feature-check-secret-0123456789"


def _report(output_dir: Path, api: str = "openai") -> dict:
    files = list(output_dir.glob(f"{api}_enhanced_features_*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def _statuses(results) -> dict:
    return {r.name: r.status for r in results}


def test_checks_pass_against_the_embedded_simulator_and_write_the_report(every_backend_checked):
    code, out, tmp_path = every_backend_checked["openai"]
    assert code == 0, out
    assert "embedded simulator" in out
    for feature in FEATURES:
        assert f"{feature}" in out
    assert "FAIL" not in out and "SKIP" not in out

    report = _report(tmp_path)
    assert report["api"] == "openai"
    assert report["target"] == "simulator"
    assert report["timestamp"]
    assert report["status"] == "passed"
    assert report["success_rate"] == 100.0
    assert list(report["results"]) == FEATURES
    for name, result in report["results"].items():
        assert set(result) == {"status", "details", "duration"}, name
        assert result["status"] == "PASS", (name, result)
        assert result["details"], name
        assert result["duration"] >= 0
    # each check verifies its own waits (HALF_OPEN only after reset_timeout, no retry before
    # the Retry-After): what it says it saw is in the report
    assert "HALF_OPEN probe closed it" in report["results"]["circuit_breaker"]["details"]
    assert "for Retry-After 0.3s" in report["results"]["retry_after"]["details"]
    assert "for retry-after-ms 100" in report["results"]["retry_after"]["details"]
    assert checks.SIMULATOR_KEY not in json.dumps(report)


def test_a_simulator_given_as_base_url_is_detected_and_the_key_never_shown(tmp_path, capsys):
    with Simulator({"valid_keys": [SECRET]}) as sim:
        base_url = sim.base_url
        code = checks.run_checks(
            api="openai",
            key=SECRET,
            base_url=base_url,
            output_dir=str(tmp_path),
            admin_token=sim.admin_token,
        )
        seen_keys = sim.counters()["by_key"]
    out = capsys.readouterr()
    assert code == 0, out.out
    assert "a simulator" in out.out
    report = _report(tmp_path)
    assert report["target"] == base_url and report["simulator"] is True
    assert {r["status"] for r in report["results"].values()} == {"PASS"}
    text = next(tmp_path.iterdir()).read_text()
    for where in (out.out, out.err, text):
        assert SECRET not in where
    assert "anonymous" not in seen_keys  # every request carried the key


def test_a_server_without_admin_endpoints_skips_the_fault_checks(tmp_path):
    # A simulator whose admin endpoints the checks do not know of: an ordinary
    # OpenAI-compatible server with some latency.
    with Simulator({"latency": 0.03}) as sim:
        target = checks.Target(
            "openai", checks.BACKENDS["openai"], sim.base_url, None, None, sim.base_url
        )
        results = checks.run_all(target, echo=lambda line: None)
        sent = sim.counters()["requests_total"]
    assert _statuses(results) == {
        "priority_queue": "PASS",
        "circuit_breaker": "SKIP",
        "monitoring": "PASS",
        "request_batching": "PASS",
        "retry_after": "SKIP",
        "queue_full": "PASS",
    }
    skipped = {r.name: r.details for r in results if r.status == "SKIP"}
    assert skipped == {
        "circuit_breaker": "skipped (needs the simulator)",
        "retry_after": "skipped (needs the simulator)",
    }
    assert sent > 0
    path = checks.write_report(target, results, str(tmp_path))
    report = json.loads(Path(path).read_text())
    assert report["success_rate"] == 100.0 and report["status"] == "passed"
    assert report["results"]["circuit_breaker"]["status"] == "SKIP"


def test_a_crashing_check_is_its_own_failure_and_the_others_still_run(tmp_path):
    def crash(target):
        raise RuntimeError(f"boom with {SECRET}")

    def fine(target):
        return "ok"

    table = (
        checks.Check("crashes", crash, needs_simulator=False),
        checks.Check(
            "fails", lambda t: checks.expect(False, "saw 2, expected 1"), needs_simulator=False
        ),
        checks.Check("works", fine, needs_simulator=False),
        checks.Check("needs_faults", fine, needs_simulator=True),
    )
    target = checks.Target(
        "openai", checks.BACKENDS["openai"], "http://127.0.0.1:9/v1", SECRET, None, "x", (SECRET,)
    )
    results = checks.run_all(target, table, echo=lambda line: None)
    assert [(r.name, r.status) for r in results] == [
        ("crashes", "FAIL"), ("fails", "FAIL"), ("works", "PASS"), ("needs_faults", "SKIP")
    ]  # fmt: skip
    assert results[0].details == "RuntimeError: boom with ***"
    assert results[1].details == "saw 2, expected 1"
    assert checks.success_rate(results) == pytest.approx(100 / 3)
    report = json.loads(Path(checks.write_report(target, results, str(tmp_path))).read_text())
    assert report["status"] == "failed"
    assert SECRET not in json.dumps(report)


def test_a_placeholder_key_leaves_the_details_and_the_report_as_written(tmp_path):
    table = (
        checks.Check(
            "fails",
            lambda t: checks.expect(False, "expected 1 request, saw 2"),
            needs_simulator=False,
        ),
    )
    target = checks.Target(
        "openai", checks.BACKENDS["openai"], "http://127.0.0.1:9/v1", "x", None, "local", ("x",)
    )
    results = checks.run_all(target, table, echo=lambda line: None)
    assert (
        results[0].details == "expected 1 request, saw 2"
    )  # a one-letter "key" is no secret: not masked in words
    report = json.loads(Path(checks.write_report(target, results, str(tmp_path))).read_text())
    assert report["results"]["fails"]["details"] == "expected 1 request, saw 2"


def _run_script(*args: str, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IPFS_ACCELERATE_"))}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


_SAID = threading.local()


def _say(*args: object, **_: object) -> None:
    """``print`` for the checks module while the runs go side by side: each thread's own lines."""
    _SAID.lines.append(" ".join(str(a) for a in args))


def _check_backend(api: str, output_dir: Path) -> tuple[int, str, Path]:
    """``run_checks(api)`` against an embedded simulator: (exit code, what it printed, folder)."""
    _SAID.lines = []
    code = checks.run_checks(api=api, output_dir=str(output_dir))
    return code, "\n".join(_SAID.lines), output_dir


@pytest.fixture(scope="module")
def every_backend_checked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``{api: (exit code, output, report folder)}`` for every backend and for ``"script"``,
    the root script (a subprocess), all run side by side."""
    script_dir = tmp_path_factory.mktemp("script")
    script = _run_script("--api", "openai", "--output-dir", str(script_dir), cwd=REPO_ROOT)
    try:
        with (
            pytest.MonkeyPatch.context() as patch,
            ThreadPoolExecutor(len(checks.BACKENDS)) as pool,
        ):
            patch.setattr(checks, "print", _say, raising=False)  # the module's global, not builtins
            runs = {
                api: pool.submit(_check_backend, api, tmp_path_factory.mktemp(api))
                for api in sorted(checks.BACKENDS)
            }
            done: dict[str, Any] = {api: run.result(timeout=120) for api, run in runs.items()}
        out, err = script.communicate(timeout=60)
        done["script"] = (script.returncode, out + err, script_dir)
        yield done
    finally:
        if script.poll() is None:
            script.kill()
            script.communicate()


def test_the_root_script_passes_against_the_embedded_simulator(every_backend_checked):
    code, output, folder = every_backend_checked["script"]
    assert code == 0, output
    assert "PASS" in output
    assert _report(folder)["status"] == "passed"


@pytest.mark.parametrize("api", sorted(checks.BACKENDS))
def test_every_backend_passes_every_check_that_applies_to_it(every_backend_checked, api):
    code, out, folder = every_backend_checked[api]
    assert code == 0, out
    assert f"Checking the {api} backend" in out
    report = _report(folder, api)
    assert report["api"] == api and report["status"] == "passed"
    backend = checks.BACKENDS[api]
    for name, result in report["results"].items():
        if name == "request_batching" and backend.embedding_model is None:
            assert result["status"] == "SKIP", (name, result)
        else:
            assert result["status"] == "PASS", (name, result)


def test_an_unknown_api_is_refused_with_the_choices(tmp_path, capsys):
    assert checks.run_checks(api="nope", output_dir=str(tmp_path)) == 2
    out = capsys.readouterr().out
    assert "Unknown API 'nope'" in out and "openai" in out and "ollama" in out
