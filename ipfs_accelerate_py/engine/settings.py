"""Every tunable setting, in one table: default, meaning, environment variable.

A backend exposes each as an attribute (``client.max_retries = 3``); a value
is checked when it is set and refused with a :class:`SettingError` that names
the setting, and takes effect for the next request.  Where a value comes
from, first to last: the constructor's ``metadata``, the environment
variable, the default.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..resilience.errors import SettingError
from ..resilience.keys import STRATEGY_NAMES
from ..resilience.validation import require_int, require_number

__all__ = [
    "CIRCUIT_OPEN_MODES",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_STREAM_LINE_BYTES",
    "ENV_PREFIX",
    "SETTINGS",
    "SettingSpec",
    "Settings",
]

ENV_PREFIX = "IPFS_ACCELERATE_"
CIRCUIT_OPEN_MODES = ("fail", "wait")
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # 64 MiB: far above any chat or embeddings answer
DEFAULT_MAX_STREAM_LINE_BYTES = 1024 * 1024  # 1 MiB: one SSE event or NDJSON line


_WHOLE_NUMBER_TEXT = re.compile(r"\s*-?\d+\s*")


def _int(minimum: int) -> Callable[[str, Any], int]:
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


def _float(
    minimum: float, *, exclusive: bool = False, optional: bool = False, maximum: float | None = None
) -> Callable[[str, Any], float | None]:
    """A finite number within the bounds, as a float; also ``"0.5"`` (an env value)."""

    def check(name: str, value: Any) -> float | None:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):  # refused below, naming the setting
                value = float(value)
        return require_number(
            name, value, minimum=minimum, exclusive=exclusive, maximum=maximum, optional=optional
        )

    return check


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    ):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise SettingError(name, value, "True or False")


def _choice(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise SettingError(name, value, f"one of {', '.join(choices)}")
        return value.strip().lower()

    return check


def _models(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(
        isinstance(v, str) and v for v in value
    ):
        raise SettingError(name, value, "a list of model names (strings)")
    return list(value)


@dataclass(frozen=True)
class SettingSpec:
    name: str
    default: Any
    check: Callable[[str, Any], Any]
    meaning: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "max_concurrent_requests", 5, _int(1), "attempts in flight at once for this backend"
    ),
    SettingSpec(
        "queue_size",
        100,
        _int(1),
        "requests that may wait in the priority queue; more fail with QueueFullError",
    ),
    SettingSpec("max_retries", 3, _int(0), "retries after the first attempt"),
    SettingSpec(
        "backoff_factor",
        2.0,
        _float(1.0),
        "growth of the backoff delay per retry (initial_retry_delay * factor**n)",
    ),
    SettingSpec(
        "initial_retry_delay",
        0.5,
        _float(0.0),
        "seconds before the first retry when the server gives no Retry-After",
    ),
    SettingSpec(
        "max_retry_delay",
        30.0,
        _float(0.0),
        "cap on a backoff delay (a server's Retry-After is honoured as given, up to max_retry_after)",
    ),
    SettingSpec(
        "max_retry_after",
        60.0,
        _float(0.0),
        "longest Retry-After believed, for a retry's wait and a key's cooldown; a server asking for more is backed off from instead (as the openai SDK does over 60 s) and the key's retry_after_over_cap counts it",
    ),
    SettingSpec(
        "retry_jitter",
        0.25,
        _float(0.0, maximum=1.0),
        "fraction of a backoff delay taken off at random (0..1)",
    ),
    SettingSpec("timeout", 60.0, _float(0.0, exclusive=True), "seconds one attempt may take"),
    SettingSpec(
        "stream_stall_timeout",
        30.0,
        _float(0.0, exclusive=True),
        "seconds a started stream may go without a chunk before it ends with StreamStalledError (until its first chunk, timeout applies and the attempt is retried)",
    ),
    SettingSpec(
        "max_response_bytes",
        DEFAULT_MAX_RESPONSE_BYTES,
        _int(1),
        "bytes a response body may have; reading stops there with ResponseTooLargeError (not retried)",
    ),
    SettingSpec(
        "max_stream_line_bytes",
        DEFAULT_MAX_STREAM_LINE_BYTES,
        _int(1),
        "bytes one stream line (one SSE event) may have; past it the stream ends with ResponseTooLargeError",
    ),
    SettingSpec(
        "request_deadline",
        300.0,
        _float(0.0, exclusive=True, optional=True),
        "seconds a request may take in all: queue wait, attempts and backoff (None: no deadline)",
    ),
    SettingSpec(
        "failure_threshold", 5, _int(1), "consecutive service failures that open the circuit"
    ),
    SettingSpec(
        "reset_timeout",
        30.0,
        _float(0.0, exclusive=True),
        "seconds the circuit stays OPEN before a probe",
    ),
    SettingSpec("half_open_max_requests", 1, _int(1), "probes let through while HALF_OPEN"),
    SettingSpec(
        "on_circuit_open",
        "fail",
        _choice(CIRCUIT_OPEN_MODES),
        "while the circuit is OPEN: 'fail' at once with CircuitOpenError, or 'wait' queued for the probe that closes it (within request_deadline)",
    ),
    SettingSpec(
        "failure_rate_threshold",
        None,
        _float(0.0, exclusive=True, optional=True, maximum=100.0),
        "percent of failed calls in the window that opens the circuit (None: rule off)",
    ),
    SettingSpec(
        "slow_call_duration",
        None,
        _float(0.0, exclusive=True, optional=True),
        "seconds from which a call counts as slow (None: rule off; needs slow_call_rate_threshold too)",
    ),
    SettingSpec(
        "slow_call_rate_threshold",
        None,
        _float(0.0, exclusive=True, optional=True, maximum=100.0),
        "percent of slow calls in the window that opens the circuit (the rule needs slow_call_duration too)",
    ),
    SettingSpec(
        "breaker_window",
        60.0,
        _float(0.0, exclusive=True),
        "seconds of history the rate rules look at",
    ),
    SettingSpec(
        "breaker_minimum_calls", 10, _int(1), "calls in the window before the rate rules judge"
    ),
    SettingSpec(
        "queue_aging_interval",
        30.0,
        _float(0.0, exclusive=True, optional=True),
        "seconds of waiting that raise a request one priority level (None: no aging)",
    ),
    SettingSpec(
        "key_strategy",
        "least-loaded",
        _choice(STRATEGY_NAMES),
        "how a request's key is picked among several: least-loaded, round-robin or weighted",
    ),
    SettingSpec(
        "batching_enabled", True, _bool, "coalesce embeddings requests to supported_batch_models"
    ),
    SettingSpec(
        "max_batch_size",
        10,
        _int(1),
        "inputs in one batched call (the provider's cap still applies)",
    ),
    SettingSpec(
        "batch_timeout", 0.5, _float(0.0), "seconds a batch waits for more inputs after its first"
    ),
)
_SPECS = {spec.name: spec for spec in SETTINGS}


class Settings:
    """The current values, each checked on the way in.

    ``on_change(name, value)`` listeners run after a value is stored, so the
    engine can rebuild the options of the policy it feeds.
    """

    def __init__(
        self, metadata: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        metadata = metadata or {}
        environ = os.environ if environ is None else environ
        self._values: dict[str, Any] = {}
        self._listeners: list[Callable[[str, Any], None]] = []
        for spec in SETTINGS:
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
        return dict(self._values)
