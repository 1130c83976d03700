"""One version, one licence: ``ipfs_accelerate_py.__version__`` is the
package's version (pyproject reads it from ``_version.py``, its one home), the User-Agent says it,
and the licence pyproject names is the LICENSE file's."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

import ipfs_accelerate_py
from ipfs_accelerate_py.transport.environment import USER_AGENT

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_a_release_number():
    assert re.fullmatch(
        r"\d+\.\d+\.\d+(?:[.-]?(?:a|b|rc|dev|post)\d*)?", ipfs_accelerate_py.__version__
    )


def test_installed_metadata_says_the_same_version():
    try:
        installed = importlib.metadata.version("ipfs_accelerate_py")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("ipfs_accelerate_py is not installed (run from a source tree only)")
    assert installed == ipfs_accelerate_py.__version__


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_pyproject_takes_the_version_from_the_package_and_names_the_licence():
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "ipfs_accelerate_py._version.__version__"
    }
    assert pyproject["project"]["license"] == {"text": "MIT"}
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert (
        licence.startswith("MIT License")
        and "Copyright (c) 2026 The ipfs_accelerate_py developers" in licence
    )


def test_user_agent_names_the_package_and_its_version():
    assert f"ipfs-accelerate-py/{ipfs_accelerate_py.__version__}" == USER_AGENT
