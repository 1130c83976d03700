"""Wire formats, one module each, found automatically.

Every module in this package (names not starting with ``_``) is imported by
:func:`discover_formats` and must export ``FORMAT`` (a
:class:`~ipfs_accelerate_py.simulator.wireformat.WireFormat`) or ``FORMATS``
(a tuple of them).  Adding a provider is adding a module here; there is no
registry to edit.  See ``wireformat.py`` for the contract.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..wireformat import WireFormat

__all__ = ["DEFAULT_FORMAT", "FormatError", "discover_formats"]

DEFAULT_FORMAT = "openai"
"""The format that answers requests no format claims (404s) when there is no upstream."""


class FormatError(ImportError):
    """A module in ``simulator/formats/`` that does not export a valid format."""


def _module_formats(name: str) -> tuple[WireFormat, ...]:
    qualified = f"{__name__}.{name}"
    try:
        module = importlib.import_module(qualified)
    except Exception as exc:  # reported with the module's name, then re-raised
        raise FormatError(f"wire format module {qualified} failed to import: {exc!r}") from exc
    found = getattr(module, "FORMATS", None)
    if found is None:
        single = getattr(module, "FORMAT", None)
        found = () if single is None else (single,)
    found = tuple(found)
    if not found or not all(isinstance(f, WireFormat) for f in found):
        raise FormatError(
            f"wire format module {qualified} must export FORMAT (a WireFormat) "
            "or FORMATS (a tuple of WireFormat)"
        )
    return found


def discover_formats() -> tuple[WireFormat, ...]:
    """Every format of every module in this package, in module-name order."""
    out: list[WireFormat] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            out.extend(_module_formats(info.name))
    return tuple(out)
