"""Rules of the codebase that a reader relies on."""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

from ipfs_accelerate_py.engine.settings import SETTINGS

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ipfs_accelerate_py"
LAYERS = [
    "cli",
    "runner",
    "checks",
    "api_backends",
    "providers",
    "engine",
    "transport",
    "resilience",
]


def imports_of(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.add(base)
    return found


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "resilience").glob("*.py")), ids=lambda p: p.name
)
def test_policies_do_no_io_and_read_no_clock(path):
    if path.name == "clock.py":
        return
    banned = {"time", "asyncio", "socket", "aiohttp", "httpx"}
    assert not {name.split(".")[0] for name in imports_of(path)} & banned


def _layer_of(module: str, here: str):
    parts = module.lstrip(".").split(".")
    for part in parts:
        if part in LAYERS or part == "simulator":
            return part
    return None


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_imports_point_down_the_layers(path):
    rel = path.relative_to(PACKAGE)
    here = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    for module in imports_of(path):
        if not module.startswith(".") and not module.startswith("ipfs_accelerate_py"):
            continue
        target = _layer_of(module, here)
        if here == "simulator":
            assert target in (None, "simulator"), f"the simulator imports {module}"
            continue
        if target is None or target == "simulator" or here not in LAYERS:
            continue
        assert LAYERS.index(target) >= LAYERS.index(here), (
            f"{rel} imports {module} from a higher layer"
        )


def test_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text()
    for spec in SETTINGS:
        assert f"`{spec.name}`" in readme, spec.name
        assert spec.env in readme, spec.env


@pytest.mark.parametrize(
    "module",
    [
        "ipfs_accelerate_py.api_backends",
        "ipfs_accelerate_py.resilience.errors",
        "ipfs_accelerate_py.simulator",
    ],
)
def test_public_all_is_complete_and_sorted(module):
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert names == sorted(names)
    for name in names:
        assert hasattr(mod, name), name
