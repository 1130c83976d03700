"""Backend names as people write them: the one table of aliases.

``anthropic`` is the ``claude`` backend and ``google`` the ``gemini`` one,
wherever a backend is chosen by name (``BACKENDS`` lookups through
:func:`~ipfs_accelerate_py.api_backends.backend_class`, ``ipfs-accelerate run
--api``, the feature checks' ``--api``, the multiplexer's ``provider``).
Case and spaces around a name do not matter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["BACKEND_ALIASES", "canonical_backend_name", "describe_backend_names"]

BACKEND_ALIASES = {"anthropic": "claude", "google": "gemini"}
"""Another name -> the backend's own."""


def canonical_backend_name(name: Any) -> Any:
    """The backend's own name for ``name`` (``" Anthropic "`` -> ``"claude"``);
    a name that is not a string, or no alias, comes back tidied but unchanged."""
    if not isinstance(name, str):
        return name
    key = name.strip().lower()
    return BACKEND_ALIASES.get(key, key)


def describe_backend_names(names: Iterable[str]) -> str:
    """``"openai, groq, claude (or anthropic), ..."``: ``names`` with their aliases, for messages."""
    aliases: dict[str, list[str]] = {}
    for alias, name in BACKEND_ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    return ", ".join(
        f"{name} (or {', '.join(aliases[name])})" if name in aliases else name for name in names
    )
