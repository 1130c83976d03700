"""``ApiKeyMultiplexer``: several API keys per provider, as the seed offers it.

::

    mux = ApiKeyMultiplexer()
    mux.add_openai_key("team-a", "sk-...", max_concurrent=5)
    mux.add_openai_key("team-b", "sk-...", max_concurrent=5)
    client = mux.get_openai_client(strategy="least-loaded")
    client.chat("gpt-4o-mini", [{"role": "user", "content": "Hi"}])
    mux.get_usage_stats()["openai"]["team-a"]["requests"]

The seed built one client per key and chose a client per *call* of
``get_openai_client``; here one backend per provider holds all of that
provider's keys in its key pool, and the engine chooses a key per *request*
(and per retry: a retry after a 429 goes to another key when one is free).
So a client obtained once spreads its traffic over every key, skips a key
that is cooling down after a 429, disabled after a 401/403 or whose breaker
is open, and keeps each key under its ``max_concurrent`` (and ``rpm`` /
``tpm`` when given).

* ``get_X_client(strategy=...)`` returns that provider's shared backend with
  its ``key_strategy`` set: ``"round-robin"``, ``"least-loaded"`` or
  ``"weighted"``.  The strategy belongs to the backend, so the last one asked
  for applies to every request through it.
* ``get_X_client(key_name="k1")`` returns a backend bound to that key only
  (made once, then cached).  It is a backend of its own: its queue, breaker
  and counters are separate from the shared one's.
* ``get_usage_stats()``: per provider, per key name, requests, in flight,
  429s, cooldowns, tokens (both backends of a key summed).  Never a secret:
  keys appear by the names given to ``add_X_key``.

Keys come only from ``add_X_key``: a backend made here drops the keys it
would have read from the environment (``OPENAI_API_KEY``,
``OPENAI_API_KEY_1``, ...).  ``metadata`` (settings for every backend made
here) and ``base_url`` (one URL for every provider, or ``{provider: URL}``;
``"simulator"`` starts the embedded one) point all of them at a server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..engine.settings import DEFAULT_MAX_CONCURRENT_REQUESTS
from ..resilience.errors import InvalidInputError, SettingError, ShutdownError
from ..resilience.keys import DEFAULT_WEIGHT, STRATEGY_NAMES, KeyOptions, RoundRobin
from .base import BaseApiBackend
from .claude import claude
from .gemini import gemini
from .groq import groq
from .names import canonical_backend_name, describe_backend_names
from .openai_api import openai_api

__all__ = [
    "ApiKeyMultiplexer",
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_STRATEGY",
    "MULTIPLEXED_PROVIDERS",
]

B = TypeVar("B", bound=BaseApiBackend)

MULTIPLEXED_PROVIDERS: dict[str, type[BaseApiBackend]] = {
    "openai": openai_api,
    "groq": groq,
    "claude": claude,
    "gemini": gemini,
}
"""The providers the multiplexer serves, by the name ``get_usage_stats`` reports them under."""

DEFAULT_MAX_CONCURRENT = DEFAULT_MAX_CONCURRENT_REQUESTS
"""Attempts in flight on one key at most, unless ``add_X_key`` says otherwise (the seed's default)."""

DEFAULT_STRATEGY = RoundRobin.name
"""The strategy ``get_X_client`` sets when it is given none (the seed's default)."""

SPECIFIC = "specific"
"""The seed's name for "the key named by key_name"; accepted with a key_name."""

_LABELS = {"openai": "OpenAI", "groq": "Groq", "claude": "Claude", "gemini": "Gemini"}
_SUMMED = (
    "requests",
    "in_flight",
    "successes",
    "failures",
    "rate_limited",
    "auth_failures",
    "cooldowns",
    "retry_after_over_cap",
    "tokens_in",
    "tokens_out",
)


@dataclass(frozen=True)
class _Key:
    """One added key: its limits, its secret and its endpoint.  Its repr never shows the secret."""

    options: KeyOptions
    secret: str
    base_url: str | None = None

    @property
    def name(self) -> str:
        return self.options.name

    def __repr__(self) -> str:
        return f"_Key({self.name!r})"


class _Provider:
    """One provider's keys and the backends made for them (guarded by the multiplexer's lock)."""

    def __init__(
        self, name: str, backend_class: type[BaseApiBackend], metadata: dict[str, Any]
    ) -> None:
        self.name = name
        self.backend_class = backend_class
        self.metadata = metadata
        self.keys: dict[str, _Key] = {}
        self.shared: BaseApiBackend | None = None
        self.bound: dict[str, BaseApiBackend] = {}

    def backends(self) -> list[BaseApiBackend]:
        return ([self.shared] if self.shared is not None else []) + list(self.bound.values())

    def new_backend(self, keys: Iterable[_Key], max_concurrent: int) -> BaseApiBackend:
        """A backend holding exactly ``keys`` (whatever the environment holds)."""
        keys = list(keys)
        backend = self.backend_class({}, dict(self.metadata))
        for key in keys:
            _put_key(backend, key)
        for stray in set(backend.api_key_names) - {k.name for k in keys}:
            backend.remove_api_key(stray)  # the environment's keys, or the keyless slot
        if "max_concurrent_requests" not in self.metadata:
            backend.max_concurrent_requests = max_concurrent
        return backend

    def total_concurrency(self) -> int:
        return sum(k.options.max_concurrent or DEFAULT_MAX_CONCURRENT for k in self.keys.values())


def _as(cls: type[B], backend: BaseApiBackend) -> B:
    """``backend`` as the class its provider's backends have."""
    if not isinstance(backend, cls):
        raise TypeError(f"expected a {cls.__name__} backend, got {type(backend).__name__}")
    return backend


def _put_key(backend: BaseApiBackend, key: _Key) -> None:
    """Add ``key`` to ``backend``'s pool, replacing a key of the same name."""
    if key.name in backend.api_key_names:
        backend.remove_api_key(key.name)
    opts = key.options
    backend.add_api_key(
        key.name,
        key.secret,
        base_url=key.base_url,
        max_concurrent=opts.max_concurrent,
        rpm=opts.rpm,
        tpm=opts.tpm,
        weight=opts.weight,
    )


class ApiKeyMultiplexer:
    """Several API keys for OpenAI, Groq, Claude and Gemini; see the module docstring.

    ``metadata``: settings for every backend made here (e.g.
    ``{"max_retries": 2}``); ``base_url``: a URL for every provider, or a
    dict ``{"openai": url, "claude": url, ...}``; ``resources`` is the
    seed's and unused.  Thread-safe.  ``close()`` (or ``with``) closes every
    backend it made.
    """

    def __init__(
        self,
        metadata: Mapping[str, Any] | None = None,
        *,
        base_url: str | Mapping[str, str] | None = None,
        resources: Mapping[str, Any] | None = None,
    ) -> None:
        if metadata is not None and not isinstance(metadata, Mapping):
            raise SettingError("metadata", metadata, "a dict of settings or None")
        urls = _base_urls(base_url)
        self._lock = threading.RLock()
        self._closed = False
        self._providers: dict[str, _Provider] = {}
        for name, cls in MULTIPLEXED_PROVIDERS.items():
            settings = dict(metadata or {})
            if name in urls:
                settings[cls.provider.spec.base_url_metadata[0]] = urls[name]
            self._providers[name] = _Provider(name, cls, settings)

    # ------------------------------------------------------------ the seed's API

    def add_openai_key(
        self,
        key_name: str,
        api_key: str,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        weight: float = DEFAULT_WEIGHT,
        base_url: str | None = None,
    ) -> None:
        """Add (or replace) an OpenAI key (see :meth:`add_key` for the keyword-only limits)."""
        self.add_key(
            "openai",
            key_name,
            api_key,
            max_concurrent,
            rpm=rpm,
            tpm=tpm,
            weight=weight,
            base_url=base_url,
        )

    def add_groq_key(
        self,
        key_name: str,
        api_key: str,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        weight: float = DEFAULT_WEIGHT,
        base_url: str | None = None,
    ) -> None:
        """Add (or replace) a Groq key."""
        self.add_key(
            "groq",
            key_name,
            api_key,
            max_concurrent,
            rpm=rpm,
            tpm=tpm,
            weight=weight,
            base_url=base_url,
        )

    def add_claude_key(
        self,
        key_name: str,
        api_key: str,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        weight: float = DEFAULT_WEIGHT,
        base_url: str | None = None,
    ) -> None:
        """Add (or replace) an Anthropic key."""
        self.add_key(
            "claude",
            key_name,
            api_key,
            max_concurrent,
            rpm=rpm,
            tpm=tpm,
            weight=weight,
            base_url=base_url,
        )

    def add_gemini_key(
        self,
        key_name: str,
        api_key: str,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        weight: float = DEFAULT_WEIGHT,
        base_url: str | None = None,
    ) -> None:
        """Add (or replace) a Gemini key."""
        self.add_key(
            "gemini",
            key_name,
            api_key,
            max_concurrent,
            rpm=rpm,
            tpm=tpm,
            weight=weight,
            base_url=base_url,
        )

    def get_openai_client(
        self, key_name: str | None = None, strategy: str = DEFAULT_STRATEGY
    ) -> openai_api:
        """The shared OpenAI backend (all keys) with ``strategy``, or the backend of ``key_name`` only."""
        return _as(openai_api, self.get_client("openai", key_name, strategy))

    def get_groq_client(
        self, key_name: str | None = None, strategy: str = DEFAULT_STRATEGY
    ) -> groq:
        """As :meth:`get_openai_client`, for Groq."""
        return _as(groq, self.get_client("groq", key_name, strategy))

    def get_claude_client(
        self, key_name: str | None = None, strategy: str = DEFAULT_STRATEGY
    ) -> claude:
        """As :meth:`get_openai_client`, for Claude."""
        return _as(claude, self.get_client("claude", key_name, strategy))

    def get_gemini_client(
        self, key_name: str | None = None, strategy: str = DEFAULT_STRATEGY
    ) -> gemini:
        """As :meth:`get_openai_client`, for Gemini."""
        return _as(gemini, self.get_client("gemini", key_name, strategy))

    def get_usage_stats(self) -> dict[str, Any]:
        """``{provider: {key name: figures}}`` for the four providers.

        Figures per key, summed over the shared backend and the key's own one:
        ``requests`` (attempts sent on the key), ``in_flight``, ``successes``,
        ``failures``, ``rate_limited`` (429s), ``auth_failures``, ``cooldowns``,
        ``tokens_in``, ``tokens_out``; then ``cooling_until`` (seconds the whole
        key has left to cool), ``cooling_models`` (``{model: seconds left}`` for
        the (key, model) pairs cooling after a 429), ``retry_after_over_cap``
        (429s whose Retry-After was over ``max_retry_after``, not believed) and
        ``longest_retry_after_asked`` (the longest such wait, or None),
        ``disabled`` (why, or None), ``breaker`` (the shared backend's view),
        the key's limits, and the seed's ``usage`` (= requests),
        ``current_requests`` (= in_flight) and ``queue_size`` (requests waiting
        in the key's own backend; the shared queue is the provider's, see
        ``get_X_client().get_stats()``).
        """
        with self._lock:
            providers = [
                (p.name, dict(p.keys), p.shared, dict(p.bound)) for p in self._providers.values()
            ]
        return {
            name: _provider_usage(keys, shared, bound) for name, keys, shared, bound in providers
        }

    # ------------------------------------------------------------ any provider

    def add_key(
        self,
        provider: str,
        key_name: str,
        api_key: str,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        weight: float = DEFAULT_WEIGHT,
        base_url: str | None = None,
    ) -> None:
        """Add a key to ``provider`` ("openai", "groq", "claude", "gemini"); a key of the
        same name is replaced (in the backends already made too).  ``base_url``
        makes the key another endpoint of the same model."""
        if not isinstance(api_key, str) or not api_key:
            raise SettingError("api_key", "<not shown>", "a non-empty string (the secret)")
        if base_url is not None and not isinstance(base_url, str):
            raise SettingError("base_url", base_url, "a URL string or None")
        key = _Key(KeyOptions(key_name, max_concurrent, rpm, tpm, weight), api_key, base_url)
        with self._lock:
            entry = self._provider(provider)
            entry.keys[key.name] = key
            if entry.shared is not None:
                _put_key(entry.shared, key)
                if "max_concurrent_requests" not in entry.metadata:
                    entry.shared.max_concurrent_requests = entry.total_concurrency()
            bound = entry.bound.get(key.name)
            if bound is not None:
                _put_key(bound, key)
                if "max_concurrent_requests" not in entry.metadata:
                    bound.max_concurrent_requests = (
                        key.options.max_concurrent or DEFAULT_MAX_CONCURRENT
                    )

    def get_client(
        self, provider: str, key_name: str | None = None, strategy: str = DEFAULT_STRATEGY
    ) -> BaseApiBackend:
        """The shared backend of ``provider`` with ``strategy`` set, or, given
        ``key_name``, the backend bound to that key only."""
        if strategy != SPECIFIC and strategy not in STRATEGY_NAMES:
            raise SettingError(
                "strategy",
                strategy,
                f"one of {', '.join(STRATEGY_NAMES)} (or {SPECIFIC!r} with a key_name)",
            )
        with self._lock:
            entry = self._provider(provider)
            if not entry.keys:
                raise InvalidInputError(
                    f"No {_LABELS[entry.name]} API keys have been added: call add_{entry.name}_key(key_name, api_key) first"
                )
            if key_name:
                return self._bound(entry, key_name)
            if strategy == SPECIFIC:
                raise InvalidInputError(
                    f"strategy {SPECIFIC!r} needs a key_name: one of {', '.join(entry.keys)}"
                )
            if entry.shared is None:
                entry.shared = entry.new_backend(entry.keys.values(), entry.total_concurrency())
            entry.shared.key_strategy = strategy
            return entry.shared

    def key_names(self, provider: str) -> list[str]:
        """The names of ``provider``'s keys, in the order they were added."""
        with self._lock:
            return list(self._provider(provider).keys)

    def _bound(self, entry: _Provider, key_name: str) -> BaseApiBackend:
        key = entry.keys.get(key_name)
        if key is None:
            raise InvalidInputError(
                f"no {_LABELS[entry.name]} key named {key_name!r}; added: {', '.join(entry.keys)}"
            )
        backend = entry.bound.get(key_name)
        if backend is None:
            backend = entry.bound[key_name] = entry.new_backend(
                [key], key.options.max_concurrent or DEFAULT_MAX_CONCURRENT
            )
        return backend

    def _provider(self, name: str) -> _Provider:
        if self._closed:
            raise ShutdownError("this ApiKeyMultiplexer is closed; create a new one")
        entry = self._providers.get(canonical_backend_name(name)) if isinstance(name, str) else None
        if entry is None:
            raise SettingError(
                "provider", name, f"one of {describe_backend_names(MULTIPLEXED_PROVIDERS)}"
            )
        return entry

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Close every backend made here (queued requests fail with ``ShutdownError``)."""
        with self._lock:
            self._closed = True
            backends = [b for p in self._providers.values() for b in p.backends()]
            for entry in self._providers.values():
                entry.shared, entry.bound = None, {}
        for backend in backends:  # outside the lock: closing waits for attempts in flight
            backend.close()

    def __enter__(self) -> ApiKeyMultiplexer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        with self._lock:
            counts = ", ".join(f"{name}={len(p.keys)}" for name, p in self._providers.items())
        return f"<ApiKeyMultiplexer keys: {counts}>"


def _base_urls(base_url: str | Mapping[str, str] | None) -> dict[str, str]:
    if base_url is None:
        return {}
    if isinstance(base_url, str):
        return dict.fromkeys(MULTIPLEXED_PROVIDERS, base_url)
    if isinstance(base_url, Mapping):
        urls = {canonical_backend_name(name): url for name, url in base_url.items()}
        if set(urls) <= set(MULTIPLEXED_PROVIDERS) and all(
            isinstance(v, str) for v in urls.values()
        ):
            return urls
    raise SettingError(
        "base_url",
        base_url,
        f"a URL, or a dict of URLs by provider ({describe_backend_names(MULTIPLEXED_PROVIDERS)})",
    )


# ---------------------------------------------------------------- usage figures


def _provider_usage(
    keys: dict[str, _Key], shared: BaseApiBackend | None, bound: dict[str, BaseApiBackend]
) -> dict[str, Any]:
    shared_pool = _key_pool(shared)
    return {
        name: _key_usage(key, shared_pool.get(name), bound.get(name)) for name, key in keys.items()
    }


def _key_pool(backend: BaseApiBackend | None) -> dict[str, Any]:
    return backend.get_stats().get("key_pool", {}) if backend is not None else {}


def _longest_cooling(views: list[dict[str, Any]]) -> dict[str, Any]:
    """``{model: seconds left}`` over the views, the longer rest where both cool a model."""
    merged: dict[str, Any] = {}
    for view in views:
        for model, left in (view.get("cooling_models") or {}).items():
            merged[model] = max(left, merged.get(model, 0.0))
    return merged


def _key_usage(
    key: _Key, shared: dict[str, Any] | None, own: BaseApiBackend | None
) -> dict[str, Any]:
    own_stats = own.get_stats() if own is not None else None
    views = [v for v in (shared, (own_stats or {}).get("key_pool", {}).get(key.name)) if v]
    figures: dict[str, Any] = {
        field: sum(int(v.get(field) or 0) for v in views) for field in _SUMMED
    }
    opts = key.options
    figures.update(
        cooling_until=max((float(v.get("cooling_until") or 0.0) for v in views), default=0.0),
        cooling_models=_longest_cooling(views),
        longest_retry_after_asked=max(
            (
                v["longest_retry_after_asked"]
                for v in views
                if v.get("longest_retry_after_asked") is not None
            ),
            default=None,
        ),
        disabled=next((v["disabled"] for v in views if v.get("disabled")), None),
        breaker=views[0].get("breaker") if views else None,
        max_concurrent=opts.max_concurrent,
        rpm=opts.rpm,
        tpm=opts.tpm,
        weight=opts.weight,
        usage=figures["requests"],
        current_requests=figures["in_flight"],
        queue_size=own_stats["current_queue_size"] if own_stats is not None else 0,
    )
    return figures
