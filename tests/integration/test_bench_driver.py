"""``python -m benchmarks`` runs scenarios in their quick mode and writes
RESULTS.md (and PNG plots where matplotlib is installed).  Each scenario's
own quick test checks its figures; this checks the driver: the scripts that
predate the common shape go through their adapters, the page has a section
per scenario with its tables, and the plots are there or said to be missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench  # a step of its own in .ci/run: python -m pytest -m bench

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("overhead-sync", "multiplexing", "memory")


@pytest.mark.timeout(400)
def test_python_m_benchmarks_writes_results_md_with_every_scenario(tmp_path):
    pytest.importorskip("httpx")  # overhead-sync's raw httpx contender
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", *SCENARIOS, "--out-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=380,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "RESULTS.md").read_text()
    assert "Machine:" in page and "Versions:" in page and "quick mode" in page
    for name in SCENARIOS:
        assert f"## {name}" in page
    assert "No figures" not in page
    assert page.count("| contender |") >= 2  # the adapted tables of overhead-sync and multiplexing
    plots = sorted(p.name for p in (tmp_path / "plots").glob("*.png")) if (tmp_path / "plots").exists() else []
    if importlib.util.find_spec("matplotlib"):
        assert any(p.startswith("overhead-sync") for p in plots) and any(p.startswith("multiplexing") for p in plots)
        assert "](plots/overhead-sync-1.png)" in page
    else:
        assert "matplotlib is not installed" in page and not plots
