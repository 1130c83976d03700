"""Where a run goes, said before it starts and repeated in its summary and
report: provider, base URL (no credentials), models, keys by label with
their limits, concurrency, window and retries.  Plain data, never a secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict
from urllib.parse import urlsplit

from ..resilience.redact import public_url
from .scan import Scan

SIMULATOR_KEY = (
    "simulator"  # the embedded simulator's placeholder key: no key of the user's is sent to it
)

__all__ = ["Target", "describe_target", "target_text"]


class Target(TypedDict):
    """Where a run goes (see the module's docstring); a report keeps it as JSON."""

    provider: str
    base_url: str  # credentials stripped
    host: str
    simulator: bool  # the embedded simulator answers
    placeholder_key: bool  # the simulator's placeholder key, no key of the user's
    models: list[str]
    keys: list[dict[str, Any]]  # {"name": label} and whichever of rpm, tpm, max_concurrent is set
    key_source: str
    concurrency: int
    window: int
    max_retries: int


def describe_target(
    client: Any,
    api: str,
    metadata: Mapping[str, Any],
    *,
    concurrency: int,
    window: int,
    scan: Scan | None = None,
    key_source: str = "",
) -> Target:
    """Where the run goes, as plain data with no secret: the provider, the
    base URL (credentials stripped), the models, the keys by label with
    their limits, concurrency and window."""
    url = public_url(client.base_url)
    simulator = metadata.get(client.provider.spec.base_url_metadata[0]) == "simulator"
    placeholder = simulator and not metadata.get("api_keys") and client.api_key == SIMULATOR_KEY
    pool = (
        client.get_stats()["key_pool"] if client.api_key or metadata.get("api_keys") else {}
    )  # no key: no row to name
    keys = [
        {
            "name": name,
            **{
                limit: row[limit]
                for limit in ("rpm", "tpm", "max_concurrent")
                if row.get(limit) is not None
            },
        }
        for name, row in pool.items()
    ]
    models = sorted({model for (_, model) in (scan.by_model if scan is not None else ()) if model})
    return {
        "provider": api,
        "base_url": url,
        "host": urlsplit(url).netloc,
        "simulator": simulator,
        "placeholder_key": placeholder,
        "models": models,
        "keys": keys,
        "key_source": "" if placeholder else key_source,
        "concurrency": concurrency,
        "window": window,
        "max_retries": client.max_retries,
    }


def target_text(target: Mapping[str, Any]) -> str:
    """The target in one line, as the start, the summary and the report show it."""
    where = f"{target['provider']} at {target['host'] or target['base_url']}"
    if target.get("simulator"):
        where += " (the embedded simulator)"
    models = target.get("models") or []
    parts = [where]
    if models:
        parts.append(
            "model " + ", ".join(models)
            if len(models) <= 3
            else f"{len(models)} models: {', '.join(models[:3])}, ..."
        )
    keys = target.get("keys") or []
    if target.get("placeholder_key"):
        parts.append("a placeholder key (the simulator needs none)")
    elif keys:
        labels = []
        for key in keys:
            limits = ", ".join(
                f"{name} {key[name]:g}" for name in ("rpm", "tpm", "max_concurrent") if name in key
            )
            labels.append(key["name"] + (f" ({limits})" if limits else ""))
        source = f" from {target['key_source']}" if target.get("key_source") else ""
        parts.append(f"key{'s' if len(keys) > 1 else ''} {', '.join(labels)}{source}")
    else:
        parts.append("no key")
    parts.append(
        f"concurrency {target['concurrency']}, window {target['window']}, retries {target['max_retries']}"
    )
    return "; ".join(parts)
