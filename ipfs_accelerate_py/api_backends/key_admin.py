"""Key administration: the keys (and endpoints) a client spreads requests over.

``client.api_key`` is the seed's one key; ``add_api_key`` / ``remove_api_key``
manage a pool beside it, each key with its own limits.  :func:`key_configs`
reads the keys a client starts with: ``metadata["api_keys"]`` and numbered
environment variables (``OPENAI_API_KEY_1``, ...).  A secret never appears in
an error message: a refused key is ``<not shown>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..engine.keyring import KeyConfig
from ..providers.base import ProviderSpec
from ..resilience.errors import InvalidInputError, SettingError
from ..resilience.keys import DEFAULT_WEIGHT, KeyOptions
from .state import ClientState

__all__ = ["KeyAdmin", "key_config", "key_configs"]


class KeyAdmin(ClientState):
    """The client's key, and its pool of further keys."""

    @property
    def api_key(self) -> str | None:
        return self._engine.api_key

    @api_key.setter
    def api_key(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise SettingError("api_key", "<not shown>", "a string or None")
        self._engine.api_key = value or None

    def add_api_key(
        self,
        name: str,
        key: str | None,
        *,
        base_url: str | None = None,
        max_concurrent: int | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        weight: float = DEFAULT_WEIGHT,
    ) -> None:
        """Add a key (or another endpoint, with ``base_url``) that requests
        are spread over; ``rpm``/``tpm``/``max_concurrent`` are its own limits."""
        self._engine.keys.add(
            key_config(
                name=name,
                key=key,
                base_url=base_url,
                max_concurrent=max_concurrent,
                rpm=rpm,
                tpm=tpm,
                weight=weight,
            ),
            self._clock.now(),
        )
        self._engine.wake()

    def remove_api_key(self, name: str) -> None:
        self._engine.keys.remove(name)

    @property
    def api_key_names(self) -> list[str]:
        """The keys requests are spread over, by name (the seed's key by its fingerprint)."""
        return self._engine.keys.names()


_KEY_FIELDS = ("name", "key", "base_url", "max_concurrent", "rpm", "tpm", "weight")


def key_config(**fields: Any) -> KeyConfig:
    """A :class:`KeyConfig` from ``{name, key, base_url, max_concurrent, rpm, tpm, weight}``."""
    unknown = set(fields) - set(_KEY_FIELDS)
    if unknown:
        raise InvalidInputError(
            f"unknown key field(s) {sorted(unknown)}: a key takes {', '.join(_KEY_FIELDS)}"
        )
    secret, base_url = fields.pop("key", None), fields.pop("base_url", None)
    if secret is not None and not isinstance(secret, str):
        raise SettingError("api_keys", "<not shown>", "each key's 'key' to be a string")
    if base_url is not None and (
        not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))
    ):
        raise SettingError(
            "api_keys", base_url, "each key's 'base_url' to be an http:// or https:// URL"
        )
    options = {k: v for k, v in fields.items() if v is not None}
    options.setdefault("weight", DEFAULT_WEIGHT)
    return KeyConfig(KeyOptions(**options), secret, base_url)


def key_configs(
    metadata: Mapping[str, Any], spec: ProviderSpec, environ: Mapping[str, str]
) -> list[KeyConfig]:
    """The keys beside the seed's one: ``metadata["api_keys"]`` (a list of
    dicts), then numbered environment variables (``OPENAI_API_KEY_1``, ...)."""
    listed = metadata.get("api_keys") or []
    if not isinstance(listed, (list, tuple)) or not all(
        isinstance(item, Mapping) for item in listed
    ):
        raise InvalidInputError(
            "metadata['api_keys'] must be a list of dicts like {'name': 'k1', 'key': 'sk-...', 'rpm': 500}"
        )
    configs = [key_config(**item) for item in listed]
    if spec.key_env:
        pattern = re.compile(rf"^{re.escape(spec.key_env[0])}_(\d+)$")
        numbered = sorted(
            (int(m.group(1)), value)
            for name, value in environ.items()
            if value and (m := pattern.match(name))
        )
        configs += [KeyConfig(KeyOptions(f"key{n}"), value) for n, value in numbered]
    return configs
