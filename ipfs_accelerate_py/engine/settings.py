"""Every tunable setting of a client, as one typed object.

:class:`Settings` declares each setting once, as a typed field
(:class:`Setting`): its default, its check, its meaning and its environment
variable.  ``settings.max_retries`` reads an ``int``; assigning it (or
``settings.set("max_retries", 5)``) checks the value and refuses it with a
:class:`SettingError` that names the setting and says what it takes.  A
backend exposes each field under the same name (``client.max_retries = 3``),
reading and writing this object; a new value takes effect for the next
request.  Where a value comes from, first to last: the constructor's
``metadata``, the environment variable, the default.

Defaults have one home: a policy's own module-level constant
(``resilience.retry.DEFAULT_MAX_RETRIES``, ``resilience.breaker.DEFAULT_*``,
...) where a policy owns the setting; the client-level ones
(``DEFAULT_TIMEOUT``, ``DEFAULT_REQUEST_DEADLINE``, ...) are defined here.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, overload

from ..resilience.batching import DEFAULT_BATCH_TIMEOUT, DEFAULT_MAX_BATCH_SIZE
from ..resilience.breaker import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_HALF_OPEN_MAX_REQUESTS,
    DEFAULT_MINIMUM_CALLS,
    DEFAULT_RESET_TIMEOUT,
    DEFAULT_WINDOW_SECONDS,
)
from ..resilience.errors import SettingError
from ..resilience.keys import STRATEGY_NAMES, LeastLoaded
from ..resilience.prices import DEFAULT_PRICES, PriceTable, PriceTableError, load_prices
from ..resilience.priority_queue import DEFAULT_QUEUE_SIZE
from ..resilience.retry import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_INITIAL_DELAY,
    DEFAULT_JITTER,
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
)
from ..resilience.validation import require_int, require_number

__all__ = [
    "CIRCUIT_OPEN_MODES",
    "DEFAULT_MAX_CONCURRENT_REQUESTS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_STREAM_LINE_BYTES",
    "DEFAULT_ON_CIRCUIT_OPEN",
    "DEFAULT_QUEUE_AGING_INTERVAL",
    "DEFAULT_REQUEST_DEADLINE",
    "DEFAULT_STREAM_STALL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "ENV_PREFIX",
    "SETTINGS",
    "Setting",
    "SettingSpec",
    "Settings",
]

T = TypeVar("T")

ENV_PREFIX = "IPFS_ACCELERATE_"
CIRCUIT_OPEN_MODES = ("fail", "wait")

# The client's own defaults (no policy owns these):
DEFAULT_MAX_CONCURRENT_REQUESTS = 5
DEFAULT_TIMEOUT = 60.0  # seconds one attempt may take
DEFAULT_STREAM_STALL_TIMEOUT = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # 64 MiB: far above any chat or embeddings answer
DEFAULT_MAX_STREAM_LINE_BYTES = 1024 * 1024  # 1 MiB: one SSE event or NDJSON line
DEFAULT_REQUEST_DEADLINE = 300.0
DEFAULT_ON_CIRCUIT_OPEN = "fail"
DEFAULT_QUEUE_AGING_INTERVAL = 30.0


_WHOLE_NUMBER_TEXT = re.compile(r"\s*-?\d+\s*")

Check = Callable[[str, Any], T]
"""A setting's check: ``check(name, value)`` is the value as stored, or a
:class:`SettingError` naming the setting."""


def _int(minimum: int) -> Check[int]:
    """A whole number >= ``minimum``; also ``"5"`` (an env value) and ``5.0``."""

    def check(name: str, value: Any) -> int:
        if (
            isinstance(value, str)
            and _WHOLE_NUMBER_TEXT.fullmatch(value)
            or isinstance(value, float)
            and value.is_integer()
        ):
            value = int(value)
        return require_int(name, value, minimum)

    return check


def _number_text(value: Any) -> Any:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # refused by the check, naming the setting
            return float(value)
    return value


def _float(
    minimum: float, *, exclusive: bool = False, maximum: float | None = None
) -> Check[float]:
    """A finite number within the bounds, as a float; also ``"0.5"`` (an env value)."""

    def check(name: str, value: Any) -> float:
        return require_number(
            name, _number_text(value), minimum=minimum, exclusive=exclusive, maximum=maximum
        )

    return check


def _optional_float(
    minimum: float, *, exclusive: bool = False, maximum: float | None = None
) -> Check[float | None]:
    """As :func:`_float`, or None (the rule or limit is off)."""

    def check(name: str, value: Any) -> float | None:
        return require_number(
            name,
            _number_text(value),
            minimum=minimum,
            exclusive=exclusive,
            maximum=maximum,
            optional=True,
        )

    return check


def _optional_int(minimum: int) -> Check[int | None]:
    """As :func:`_int`, or None (the limit is off)."""
    whole = _int(minimum)

    def check(name: str, value: Any) -> int | None:
        return None if value is None else whole(name, value)

    return check


def _prices(name: str, value: Any) -> PriceTable:
    """A price table (a :class:`PriceTable`, a mapping, a file's path) over
    the built-in one; None: the built-in one alone."""
    if value is None or value is DEFAULT_PRICES:
        return DEFAULT_PRICES
    try:
        table = load_prices(value)
    except PriceTableError as exc:
        raise SettingError(name, value, f"a price table ({exc})") from None
    return table.merged_over(DEFAULT_PRICES)


_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    raise SettingError(name, value, "True or False")


def _choice(choices: tuple[str, ...]) -> Check[str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise SettingError(name, value, f"one of {', '.join(choices)}")
        return value.strip().lower()

    return check


class Setting(Generic[T]):
    """One typed field of :class:`Settings`: its default, its check and its
    meaning.  On a :class:`Settings` object it reads the current value and
    sets a checked one; on the class it is this description."""

    __slots__ = ("check", "default", "meaning", "name")

    def __init__(self, default: T, check: Check[T], meaning: str) -> None:
        self.name = ""
        self.default = default
        self.check = check
        self.meaning = meaning

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def env(self) -> str:
        """The environment variable that sets it: ``IPFS_ACCELERATE_<NAME>``."""
        return ENV_PREFIX + self.name.upper()

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Setting[T]: ...
    @overload
    def __get__(self, obj: Settings, owner: type | None = None) -> T: ...
    def __get__(self, obj: Settings | None, owner: type | None = None) -> Setting[T] | T:
        if obj is None:
            return self
        value: T = obj._values[self.name]
        return value

    def __set__(self, obj: Settings, value: T) -> None:
        obj.set(self.name, value)

    def __repr__(self) -> str:
        return f"Setting({self.name}={self.default!r})"


SettingSpec = Setting
"""The name this description had before :class:`Settings` held typed fields."""


class Settings:
    """The current values of one client's settings, each checked on the way in.

    ``on_change(name, value)`` listeners run after a value is stored, so the
    engine can rebuild the options of the policy it feeds; a listener that
    raises (a policy refused the value) leaves the old value in place.
    """

    max_concurrent_requests = Setting(
        DEFAULT_MAX_CONCURRENT_REQUESTS, _int(1), "attempts in flight at once for this backend"
    )
    queue_size = Setting(
        DEFAULT_QUEUE_SIZE,
        _int(1),
        "requests that may wait in the priority queue; more fail with QueueFullError",
    )
    max_retries = Setting(DEFAULT_MAX_RETRIES, _int(0), "retries after the first attempt")
    backoff_factor = Setting(
        DEFAULT_BACKOFF_FACTOR,
        _float(1.0),
        "growth of the backoff delay per retry (initial_retry_delay * factor**n)",
    )
    initial_retry_delay = Setting(
        DEFAULT_INITIAL_DELAY,
        _float(0.0),
        "seconds before the first retry when the server gives no Retry-After",
    )
    max_retry_delay = Setting(
        DEFAULT_MAX_DELAY,
        _float(0.0),
        "cap on a backoff delay (a server's Retry-After is honoured as given, up to max_retry_after)",
    )
    max_retry_after = Setting(
        DEFAULT_MAX_RETRY_AFTER,
        _float(0.0),
        "longest Retry-After believed, for a retry's wait and a key's cooldown; a server asking for more is backed off from instead (as the openai SDK does over 60 s) and the key's retry_after_over_cap counts it",
    )
    retry_jitter = Setting(
        DEFAULT_JITTER,
        _float(0.0, maximum=1.0),
        "fraction of a backoff delay taken off at random (0..1)",
    )
    timeout = Setting(DEFAULT_TIMEOUT, _float(0.0, exclusive=True), "seconds one attempt may take")
    stream_stall_timeout = Setting(
        DEFAULT_STREAM_STALL_TIMEOUT,
        _float(0.0, exclusive=True),
        "seconds a started stream may go without a chunk before it ends with StreamStalledError (until its first chunk, timeout applies and the attempt is retried)",
    )
    max_response_bytes = Setting(
        DEFAULT_MAX_RESPONSE_BYTES,
        _int(1),
        "bytes a response body may have; reading stops there with ResponseTooLargeError (not retried)",
    )
    max_stream_line_bytes = Setting(
        DEFAULT_MAX_STREAM_LINE_BYTES,
        _int(1),
        "bytes one stream line (one SSE event) may have; past it the stream ends with ResponseTooLargeError",
    )
    request_deadline = Setting[float | None](
        DEFAULT_REQUEST_DEADLINE,
        _optional_float(0.0, exclusive=True),
        "seconds a request may take in all: queue wait, attempts and backoff (None: no deadline)",
    )
    failure_threshold = Setting(
        DEFAULT_FAILURE_THRESHOLD,
        _int(1),
        "consecutive service failures that open the circuit",
    )
    reset_timeout = Setting(
        DEFAULT_RESET_TIMEOUT,
        _float(0.0, exclusive=True),
        "seconds the circuit stays OPEN before a probe",
    )
    half_open_max_requests = Setting(
        DEFAULT_HALF_OPEN_MAX_REQUESTS, _int(1), "probes let through while HALF_OPEN"
    )
    on_circuit_open = Setting(
        DEFAULT_ON_CIRCUIT_OPEN,
        _choice(CIRCUIT_OPEN_MODES),
        "while the circuit is OPEN: 'fail' at once with CircuitOpenError, or 'wait' queued for the probe that closes it (within request_deadline)",
    )
    failure_rate_threshold = Setting[float | None](
        None,
        _optional_float(0.0, exclusive=True, maximum=100.0),
        "percent of failed calls in the window that opens the circuit (None: rule off)",
    )
    slow_call_duration = Setting[float | None](
        None,
        _optional_float(0.0, exclusive=True),
        "seconds from which a call counts as slow (None: rule off; needs slow_call_rate_threshold too)",
    )
    slow_call_rate_threshold = Setting[float | None](
        None,
        _optional_float(0.0, exclusive=True, maximum=100.0),
        "percent of slow calls in the window that opens the circuit (the rule needs slow_call_duration too)",
    )
    breaker_window = Setting(
        DEFAULT_WINDOW_SECONDS,
        _float(0.0, exclusive=True),
        "seconds of history the rate rules look at",
    )
    breaker_minimum_calls = Setting(
        DEFAULT_MINIMUM_CALLS, _int(1), "calls in the window before the rate rules judge"
    )
    queue_aging_interval = Setting[float | None](
        DEFAULT_QUEUE_AGING_INTERVAL,
        _optional_float(0.0, exclusive=True),
        "seconds of waiting that raise a request one priority level (None: no aging)",
    )
    key_strategy = Setting(
        LeastLoaded.name,
        _choice(STRATEGY_NAMES),
        "how a request's key is picked among several: least-loaded, round-robin or weighted",
    )
    batching_enabled = Setting(
        True, _bool, "coalesce embeddings requests to supported_batch_models"
    )
    max_batch_size = Setting(
        DEFAULT_MAX_BATCH_SIZE,
        _int(1),
        "inputs in one batched call (the provider's cap still applies)",
    )
    batch_timeout = Setting(
        DEFAULT_BATCH_TIMEOUT,
        _float(0.0),
        "seconds a batch waits for more inputs after its first",
    )
    prices = Setting[PriceTable](
        DEFAULT_PRICES,
        _prices,
        "US dollars per million input and output tokens, per model: a price file's path (YAML or JSON), a mapping or a PriceTable, over the built-in table (DEFAULT_PRICES, dated: check it)",
    )
    max_cost = Setting[float | None](
        None,
        _optional_float(0.0, exclusive=True),
        "US dollars this client may spend (by prices); past it new requests fail with BudgetExceededError, those in flight finish (None: no limit)",
    )
    max_tokens_total = Setting[int | None](
        None,
        _optional_int(1),
        "tokens (input and output) this client may use; past it new requests fail with BudgetExceededError (None: no limit)",
    )
    otel_enabled = Setting(
        True,
        _bool,
        "spans and metrics by the OpenTelemetry GenAI conventions, when opentelemetry-api is installed (to the global providers: a no-op until the application sets an SDK up)",
    )
    otel_capture_content = Setting(
        False,
        _bool,
        "record prompts and completions on spans (off: never recorded)",
    )

    def __init__(
        self, metadata: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        metadata = metadata or {}
        environ = os.environ if environ is None else environ
        self._values: dict[str, Any] = {}
        # the same dict, for reading on a hot path without a call (never write it: use set())
        self.values: Mapping[str, Any] = self._values
        self._listeners: list[Callable[[str, Any], None]] = []
        for spec in SETTINGS:
            raw: Any
            if spec.name in metadata:
                raw = metadata[spec.name]
            elif spec.env in environ:
                raw = environ[spec.env]
                if raw.strip().lower() in ("none", "") and spec.default is None:
                    raw = None
            else:
                raw = spec.default
            self._values[spec.name] = spec.check(spec.name, raw)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def set(self, name: str, value: Any) -> Any:
        """Check ``value`` and store it as ``name``; returns the value as stored."""
        spec = _SPECS.get(name)
        if spec is None:
            raise SettingError(
                name, value, f"one of the known settings: {', '.join(sorted(_SPECS))}"
            )
        value = spec.check(name, value)
        old, self._values[name] = self._values[name], value
        try:
            for listener in list(self._listeners):
                listener(name, value)
        except Exception:
            self._values[name] = old  # a policy refused it: nothing changes
            raise
        return value

    def add_listener(self, fn: Callable[[str, Any], None]) -> None:
        self._listeners.append(fn)

    def as_dict(self) -> dict[str, Any]:
        """Every value, as plain data (the price table as a price file would have it)."""
        return {
            name: value.as_dict() if isinstance(value, PriceTable) else value
            for name, value in self._values.items()
        }

    def __repr__(self) -> str:
        changed = [
            f"{spec.name}={self._values[spec.name]!r}"
            for spec in SETTINGS
            if self._values[spec.name] != spec.default
        ]
        return f"Settings({', '.join(changed)})"


SETTINGS: tuple[Setting[Any], ...] = tuple(
    field for field in vars(Settings).values() if isinstance(field, Setting)
)
"""Every setting, in the order the README lists them."""
_SPECS = {spec.name: spec for spec in SETTINGS}
