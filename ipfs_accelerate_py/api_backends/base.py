"""The public surface every backend shares (the seed's contract).

A backend module only names its provider adapter and its defaults; all
behaviour lives here and in the engine below it.  :class:`BaseApiBackend`
is put together from one part per idea, each in its own module:

- :mod:`.settings_access`: every setting as an attribute (``client.max_retries = 5``),
  reading and writing the client's typed :class:`~ipfs_accelerate_py.engine.settings.Settings`;
- :mod:`.key_admin`: ``api_key`` and the key pool (``add_api_key``, ...);
- :mod:`.monitoring`: statistics, the report, the circuit, the queue's snapshot;
- :mod:`.operations`, :mod:`.submission`, :mod:`.calls`: what a call sends,
  how it reaches the engine, and the public sync and async calls.

This module holds the constructor, identity (``base_url``, models), views
(``with_options``) and closing.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from ..engine.call_options import DEFAULT_OPTIONS, CallOptions
from ..engine.engine import Engine
from ..engine.settings import Settings
from ..resilience import priority_queue as _queue
from ..resilience.breaker import STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN
from ..resilience.clock import SYSTEM_CLOCK, Clock
from ..resilience.errors import InvalidInputError, SettingError
from ..resilience.priority_queue import PRIORITY_NAMES, priority_level
from ..resilience.redact import public_url
from .calls import CallSurface, public_method
from .key_admin import KeyAdmin, key_config, key_configs
from .monitoring import Monitoring
from .operations import model_argument
from .priority import Priority, PriorityLike
from .settings_access import SettingsAccess
from .state import first_value

__all__ = [
    "CIRCUIT_STATES",
    "SIMULATOR_BASE_URLS",
    "BaseApiBackend",
    "Priority",
    "key_config",
    "key_configs",
    "model_argument",
    "public_method",
]

SIMULATOR_BASE_URLS = ("simulator", "embedded")
"""A base URL of ``"simulator"`` starts the embedded simulator in this process and uses it."""

CIRCUIT_STATES = (STATE_CLOSED, STATE_OPEN, STATE_HALF_OPEN)

B = TypeVar("B", bound="BaseApiBackend")


class BaseApiBackend(SettingsAccess, KeyAdmin, Monitoring, CallSurface):
    """Priority queue, circuit breaker, retries, batching and statistics
    over one provider.  Subclasses set ``provider`` (a wire adapter)."""

    # The queue's own constants (``Priority`` names them as an enum):
    PRIORITY_HIGH = _queue.PRIORITY_HIGH
    PRIORITY_NORMAL = _queue.PRIORITY_NORMAL
    PRIORITY_LOW = _queue.PRIORITY_LOW

    _embedding_models: list[str]

    def __init__(
        self,
        resources: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        transport: Any = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: Any = None,
    ) -> None:
        if resources is not None and not isinstance(resources, Mapping):
            raise InvalidInputError(
                f"resources must be a dict (or None), not {type(resources).__name__}"
            )
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidInputError(
                f"metadata must be a dict (or None), not {type(metadata).__name__}"
            )
        self.resources = dict(resources or {})
        self.metadata = dict(metadata or {})
        spec = self.provider.spec
        self._settings = Settings(self.metadata)
        self._clock = clock
        base_url = (
            first_value(self.metadata, spec.base_url_metadata, spec.base_url_env, os.environ)
            or spec.default_base_url
        )
        if base_url.strip().lower() in SIMULATOR_BASE_URLS:
            from ..simulator.embedded import embedded_simulator

            base_url = embedded_simulator().url + spec.simulator_path
        base_url = self.provider.normalize_base_url(base_url)
        self._engine = Engine(
            self.provider,
            self._settings,
            base_url=base_url,
            api_key=first_value(self.metadata, spec.key_metadata, spec.key_env, os.environ),
            transport=transport,
            clock=clock,
            rng=rng,
        )
        for config in key_configs(self.metadata, spec, os.environ):
            self._engine.keys.add(config, clock.now())
        models = self.metadata.get("embedding_models", spec.embedding_models)
        self.embedding_models = models
        self.supported_batch_models = self.metadata.get("supported_batch_models", models)
        self._started_wall = clock.wall()

    # --------------------------------------------------------- identity

    @property
    def base_url(self) -> str:
        return self._engine.base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        self._set_base_url(value)

    def _set_base_url(self, value: Any) -> None:
        if not isinstance(value, str):
            raise SettingError("base_url", value, "a URL string")
        value = self.provider.normalize_base_url(value)
        if not value.startswith(("http://", "https://")):
            raise SettingError("base_url", value, "an http:// or https:// URL")
        self._engine.base_url = value

    @property
    def supported_batch_models(self) -> list[str]:
        return list(self._engine.supported_batch_models)

    @supported_batch_models.setter
    def supported_batch_models(self, value: Iterable[str]) -> None:
        self._engine.supported_batch_models = frozenset(
            _model_names("supported_batch_models", value)
        )

    @property
    def embedding_models(self) -> list[str]:
        return self._embedding_models

    @embedding_models.setter
    def embedding_models(self, value: Iterable[str]) -> None:
        names = _model_names("embedding_models", value)
        if "_embedding_models" in self.__dict__:
            self._embedding_models[:] = names  # in place: views share the list
        else:
            self._embedding_models = list(names)

    def __repr__(self) -> str:
        if self._view_of is not None:
            return f"<{type(self).__name__} view ({self._view_description()}) of {self._view_of!r}>"
        names = self.api_key_names
        key = f"key={names[0]}" if len(names) == 1 else f"keys={','.join(names)}"
        if not self._engine.keys.has_secret():
            key = "no key"
        return f"<{type(self).__name__} {public_url(self.base_url)} {key} circuit={self.circuit_state}>"

    # ------------------------------------------------------------ views

    def with_options(
        self: B,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        priority: PriorityLike = None,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        on_circuit_open: str | None = None,
    ) -> B:
        """A view of this client whose calls default to these per-call
        options (as in the openai SDK): ``client.with_options(timeout=5,
        max_retries=0).chat(...)``.  A call's own arguments still win;
        headers and query parameters merge.

        The view is cheap and shares everything with its client: the engine
        (queue, breaker, statistics, keys, connections) and the settings.
        ``view.timeout`` and ``view.max_retries`` read its own values where it
        has them.  Nothing can be set through a view (set it on the client),
        and closing a view does nothing: the client owns the engine."""
        options = CallOptions.of(
            timeout, max_retries, extra_headers, extra_query, on_circuit_open
        ).over(self._call_defaults)
        level = self._default_priority if priority is None else priority_level(priority)
        view = copy.copy(
            self
        )  # the same engine, settings and state: only the defaults below differ
        view.__dict__.update(
            _view_of=self._view_of or self, _call_defaults=options, _default_priority=level
        )
        return view

    def _view_description(self) -> str:
        parts = (
            [self._call_defaults.describe()] if self._call_defaults is not DEFAULT_OPTIONS else []
        )
        if self._default_priority is not None:
            parts.append(f"priority={PRIORITY_NAMES[self._default_priority].lower()}")
        return ", ".join(parts) or "no options"

    def __setattr__(self, name: str, value: Any) -> None:
        if self._view_of is not None:
            raise AttributeError(
                f"cannot set {name!r} on a view ({type(self).__name__}.with_options): set it on the client, "
                "which the view shares, or make another view with client.with_options(...)"
            )
        super().__setattr__(name, value)

    # ----------------------------------------------------------- closing

    def close(self) -> None:
        """Fail what is queued with ``ShutdownError``, let attempts in flight
        finish (a few seconds at most), release connections.  On a view
        (:meth:`with_options`) it does nothing: the client owns the engine."""
        if self._view_of is None:
            self._engine.close()

    async def aclose(self, grace: float = 5.0) -> None:
        """:meth:`close`, awaited from any event loop; attempts in flight get
        ``grace`` seconds to finish, then are cancelled."""
        if self._view_of is None:
            await self._engine.aclose_from_any_loop(grace)

    def __enter__(self: B) -> B:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self: B) -> B:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------ events

    def subscribe(self, callback: Callable[[Any], object], *kinds: type) -> Callable[[], None]:
        """Call ``callback(event)`` for each event of this client's engine
        (:mod:`ipfs_accelerate_py.engine.events`: ``RequestQueued``,
        ``AttemptStarted``, ``AttemptEnded``, ``RetryScheduled``, ``KeyCooled``,
        ``KeyRefused``, ``BreakerTransition``, ``RequestDone``), or only for ``kinds``; on the
        engine's thread.  What it raises is logged once and never breaks a
        request.  Returns the function that unsubscribes it."""
        return self._engine.events.subscribe(callback, *kinds)

    def unsubscribe(self, callback: Callable[[Any], object]) -> None:
        """Stop calling ``callback`` (nothing happens if it was not subscribed)."""
        self._engine.events.unsubscribe(callback)


def _model_names(setting: str, value: Any) -> list[str]:
    """A list of model names (any iterable of strings but a string itself), or a SettingError naming ``setting``."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise SettingError(setting, value, "a list of model names")
    names = list(value)
    if not all(isinstance(v, str) for v in names):
        raise SettingError(setting, value, "a list of model names")
    return names
