"""What every part of a client shares: its engine, clock, settings and view defaults.

:class:`~ipfs_accelerate_py.api_backends.base.BaseApiBackend` is put together
from a few parts, each a class of its own module (settings access, key
administration, statistics and the circuit, the call surface).  Each part
derives from :class:`ClientState`, which declares the state they read; the
backend's constructor sets it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..engine.call_options import DEFAULT_OPTIONS, CallOptions
from ..engine.engine import Engine
from ..engine.settings import Settings
from ..providers.base import Wire
from ..resilience.clock import Clock

__all__ = ["ClientState", "first_value", "shown"]


class ClientState:
    """The state a client's parts share (set by the backend's constructor)."""

    provider: Wire  # the provider's wire adapter, set by each backend module (hf_tei: per client)
    _engine: Engine
    _clock: Clock
    _settings: Settings

    # A view (with_options) sets its own; a client has these:
    _view_of: ClientState | None = None  # the client a view was made from
    _call_defaults: CallOptions = DEFAULT_OPTIONS
    _default_priority: int | None = None


def shown(value: Any) -> str:
    """A caller's value for an error message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def first_value(
    metadata: Mapping[str, Any], keys: Iterable[str], env: Iterable[str], environ: Mapping[str, str]
) -> str | None:
    """The first non-empty ``metadata[key]``, else the first non-empty environment variable."""
    for key in keys:
        value = metadata.get(key)
        if value:
            return str(value)
    for name in env:
        found = environ.get(name)
        if found:
            return found
    return None
