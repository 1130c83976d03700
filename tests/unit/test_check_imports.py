"""``scripts/check_imports.py``, the import gate of ``.ci/run``: it finds a
cycle and a layer violation where there is one, says where, and passes the
real package."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_imports.py"


def run_check(package_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(package_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=package_dir.parent,
    )


def make_package(root: Path, files: dict[str, str]) -> Path:
    """A package named like ours (the layers go by its subpackage names)."""
    package = root / "ipfs_accelerate_py"
    for name, text in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(package).parents:
            (package / parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return package


CLEAN = {
    "cli.py": "from .runner import run\nfrom .simulator import server\n",
    "runner/run.py": "from ..api_backends import base\n",
    "api_backends/base.py": """\
        from ..engine import engine
        from ..providers import openai

        def start():
            from ..simulator.embedded import embedded_simulator
        """,
    "providers/openai.py": "from ..transport import sse\n",
    "engine/engine.py": "from . import request\nfrom ..transport.base import Transport\n",
    "engine/request.py": "from ..resilience import errors\n",
    "transport/base.py": "from ..resilience.errors import ApiError\n",
    "transport/sse.py": "from .._version import __version__\n",
    "resilience/errors.py": "import json\n",
    "simulator/server.py": "from . import embedded\n",
    "simulator/embedded.py": "import threading\n",
    "_version.py": "__version__ = '1'\n",
}


def test_a_package_that_keeps_the_rules_passes(tmp_path):
    result = run_check(make_package(tmp_path, CLEAN))
    assert (result.returncode, result.stdout) == (0, "")


def test_a_cycle_and_each_kind_of_violation_are_reported_one_line_each(tmp_path):
    broken = dict(
        CLEAN,
        **{
            # engine <-> request, one side under TYPE_CHECKING: still a cycle
            "engine/request.py": """\
                from typing import TYPE_CHECKING

                from ..resilience import errors

                if TYPE_CHECKING:
                    from .engine import Engine
                """,
            # the policies reaching up into the engine, from inside a function
            "resilience/breaker.py": "def f():\n    from ..engine.engine import Engine\n",
            # the simulator importing the client, and the client importing the simulator
            "simulator/server.py": "from ..resilience import errors\n",
            "providers/openai.py": "from ..simulator.server import Simulator\n",
            "gadgets.py": "",
        },
    )
    result = run_check(make_package(tmp_path, broken))
    lines = result.stdout.splitlines()
    assert result.returncode == 1
    cycles = [line for line in lines if line.startswith("import cycle:")]
    assert cycles == [
        "import cycle: ipfs_accelerate_py.engine.engine -> ipfs_accelerate_py.engine.request "
        "(ipfs_accelerate_py/engine/engine.py:1) -> ipfs_accelerate_py.engine.engine "
        "(ipfs_accelerate_py/engine/request.py:6, TYPE_CHECKING)"
    ]
    assert (
        "ipfs_accelerate_py/resilience/breaker.py:2: layer violation: "
        "ipfs_accelerate_py.resilience.breaker (resilience) imports "
        "ipfs_accelerate_py.engine.engine (engine, a higher layer)"
    ) in lines
    assert any(
        line.startswith("ipfs_accelerate_py/simulator/server.py:1: the simulator stands alone")
        for line in lines
    )
    assert any(
        line.startswith("ipfs_accelerate_py/providers/openai.py:1: only the applications import")
        for line in lines
    )
    assert any("module ipfs_accelerate_py.gadgets is in no layer" in line for line in lines)
    # a lazy import of the embedded simulator is the client's one exception; the
    # same import at module level is not
    assert not any("api_backends/base.py" in line for line in lines)
    assert len(lines) == 5


def test_the_embedded_simulator_exception_holds_only_inside_a_function(tmp_path):
    eager = dict(
        CLEAN, **{"api_backends/base.py": "from ..simulator.embedded import embedded_simulator\n"}
    )
    result = run_check(make_package(tmp_path, eager))
    assert result.returncode == 1
    assert result.stdout.startswith(
        "ipfs_accelerate_py/api_backends/base.py:1: only the applications import the simulator"
    )


def test_an_import_of_a_missing_module_is_reported(tmp_path):
    result = run_check(
        make_package(tmp_path, dict(CLEAN, **{"cli.py": "from .runer import run\n"}))
    )
    assert result.returncode == 1
    assert (
        "ipfs_accelerate_py/cli.py:1: imports ipfs_accelerate_py.runer, "
        "which is not a module of the package"
    ) in result.stdout.splitlines()


def test_the_real_package_has_no_cycle_and_keeps_its_layers():
    result = run_check(ROOT / "ipfs_accelerate_py")
    assert result.returncode == 0, result.stdout
