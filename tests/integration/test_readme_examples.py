"""The README's Python examples run as written: the main one against the
simulator fixture and S3's against a local S3 server, each in a fresh
interpreter; each backend's against the embedded simulator it names, in this
process."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = dict(os.environ, **env)
    environ.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60
    )


BACKEND_BLOCKS = [b for b in BLOCKS[1:] if "s3_kit" not in b]


def run_here(code: str) -> str:
    """``code`` run as a script in this process (``__name__ == "__main__"``); what it printed.

    The backend examples run here, not in interpreters of their own: the
    package is imported once, not once an example.  The main and the S3
    examples still run in fresh interpreters."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "<README example>", "exec"), {"__name__": "__main__"})
    return printed.getvalue()


def test_the_readme_has_the_main_example_and_one_per_backend():
    from ipfs_accelerate_py.api_backends import BACKENDS

    assert "openai_api(" in BLOCKS[0]
    for name in BACKENDS:
        if name != "openai":
            assert any(f"{name}(" in block for block in BLOCKS), f"no README example for {name}"
            assert f"### `{name}`" in README.read_text(encoding="utf-8")


def test_the_main_example_runs(simulator):
    done = run(BLOCKS[0], OPENAI_BASE_URL=simulator.base_url)
    assert done.returncode == 0, done.stderr
    assert "Simulated reply to: Hello" in done.stdout
    assert simulator.counters()["requests_total"] >= 4


@pytest.mark.parametrize(
    "code", BACKEND_BLOCKS, ids=lambda code: re.search(r"import (\w+)", code).group(1)
)
def test_each_backend_example_runs_against_the_embedded_simulator(code, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert run_here(code).strip()


def test_the_s3_example_runs_against_a_local_s3_server():
    moto = pytest.importorskip("moto.server")
    server = moto.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        (code,) = [b for b in BLOCKS if "s3_kit" in b]
        done = run(code, S3_ENDPOINT=f"http://{host}:{port}")
        assert done.returncode == 0, done.stderr
        assert "b'hello'" in done.stdout and "greeting.txt" in done.stdout
    finally:
        server.stop()
