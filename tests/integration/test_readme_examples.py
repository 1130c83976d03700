"""The README's Python examples run as written against the simulator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code, simulator):
    env = dict(os.environ, OPENAI_BASE_URL=simulator.base_url)
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Simulated reply to: Hello" in done.stdout
    assert simulator.counters()["requests_total"] >= 4


def test_readme_has_examples():
    assert BLOCKS
