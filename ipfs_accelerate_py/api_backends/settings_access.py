"""``client.<setting>``: each setting of :class:`~ipfs_accelerate_py.engine.settings.Settings`
under the seed's attribute name, reading and writing the client's settings object.

``client.max_retries = 5`` checks the value (a :class:`SettingError` names the
setting and what it takes) and the next request uses it.  A view
(``client.with_options(timeout=5)``) reads its own ``timeout``,
``max_retries`` and ``on_circuit_open`` where it set them.
"""

from __future__ import annotations

from typing import Generic, TypeVar, overload

from ..engine.settings import Setting, Settings
from .state import ClientState

__all__ = ["ClientSetting", "SettingsAccess"]

T = TypeVar("T")

VIEWED_SETTINGS = frozenset({"timeout", "max_retries", "on_circuit_open"})
"""Settings a view (``client.with_options``) may give its own value."""


class ClientSetting(Generic[T]):
    """``client.<name>``: the value of the settings field ``field`` (a view's
    own, if it has one); setting it checks it."""

    __slots__ = ("field", "name")

    def __init__(self, field: Setting[T]) -> None:
        self.field = field
        self.name = field.name

    @property
    def meaning(self) -> str:
        return self.field.meaning

    @overload
    def __get__(self, obj: None, owner: type) -> ClientSetting[T]: ...
    @overload
    def __get__(self, obj: ClientState, owner: type) -> T: ...
    def __get__(self, obj: ClientState | None, owner: type) -> ClientSetting[T] | T:
        if obj is None:
            return self
        if self.name in VIEWED_SETTINGS:
            own: T | None = getattr(obj._call_defaults, self.name)
            if own is not None:
                return own
        return self.field.__get__(obj._settings)

    def __set__(self, obj: ClientState, value: T) -> None:
        obj._settings.set(self.name, value)

    def __repr__(self) -> str:
        return f"<client setting {self.name}: {self.field.meaning}>"


class SettingsAccess(ClientState):
    """Every setting, by name, on the client (see ``engine/settings.py`` for each one's meaning)."""

    max_concurrent_requests = ClientSetting(Settings.max_concurrent_requests)
    queue_size = ClientSetting(Settings.queue_size)
    max_retries = ClientSetting(Settings.max_retries)
    backoff_factor = ClientSetting(Settings.backoff_factor)
    initial_retry_delay = ClientSetting(Settings.initial_retry_delay)
    max_retry_delay = ClientSetting(Settings.max_retry_delay)
    max_retry_after = ClientSetting(Settings.max_retry_after)
    retry_jitter = ClientSetting(Settings.retry_jitter)
    timeout = ClientSetting(Settings.timeout)
    stream_stall_timeout = ClientSetting(Settings.stream_stall_timeout)
    max_response_bytes = ClientSetting(Settings.max_response_bytes)
    max_stream_line_bytes = ClientSetting(Settings.max_stream_line_bytes)
    request_deadline = ClientSetting(Settings.request_deadline)
    failure_threshold = ClientSetting(Settings.failure_threshold)
    reset_timeout = ClientSetting(Settings.reset_timeout)
    half_open_max_requests = ClientSetting(Settings.half_open_max_requests)
    on_circuit_open = ClientSetting(Settings.on_circuit_open)
    failure_rate_threshold = ClientSetting(Settings.failure_rate_threshold)
    slow_call_duration = ClientSetting(Settings.slow_call_duration)
    slow_call_rate_threshold = ClientSetting(Settings.slow_call_rate_threshold)
    breaker_window = ClientSetting(Settings.breaker_window)
    breaker_minimum_calls = ClientSetting(Settings.breaker_minimum_calls)
    queue_aging_interval = ClientSetting(Settings.queue_aging_interval)
    key_strategy = ClientSetting(Settings.key_strategy)
    batching_enabled = ClientSetting(Settings.batching_enabled)
    max_batch_size = ClientSetting(Settings.max_batch_size)
    batch_timeout = ClientSetting(Settings.batch_timeout)
    prices = ClientSetting(Settings.prices)
    max_cost = ClientSetting(Settings.max_cost)
    max_tokens_total = ClientSetting(Settings.max_tokens_total)
    otel_enabled = ClientSetting(Settings.otel_enabled)
    otel_capture_content = ClientSetting(Settings.otel_capture_content)

    @property
    def settings(self) -> Settings:
        """This client's settings object (shared with its views): typed fields, checked when set."""
        return self._settings
