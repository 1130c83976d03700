"""Per-call options: what one call may change beside its JSON body.

The openai SDK's per-request habits, carried on the :class:`Request`:

- ``timeout``: seconds each attempt may take, in place of ``client.timeout``;
- ``max_retries``: in place of ``client.max_retries``, for this request;
- ``extra_headers``: merged into the HTTP headers last, so they may replace
  the client's own (``Authorization`` included, as in the openai SDK); a
  value of ``None`` removes that header;
- ``extra_query``: added to the URL's query string (replacing a parameter
  of the same name);
- ``on_circuit_open``: ``"fail"`` or ``"wait"``, in place of
  ``client.on_circuit_open``, for this request.

None of them is ever sent in the body.  A :class:`CallOptions` is a frozen,
validated, hashable value (the batch lane puts only requests with equal
options in one batch); its repr names headers and query parameters but
never shows their values, which may be secrets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..resilience.errors import InvalidInputError
from .settings import CIRCUIT_OPEN_MODES

__all__ = ["CallOptions", "DEFAULT_OPTIONS", "circuit_mode"]

_QUERY_SCALARS = (str, int, float, bool)
_BAD_HEADER_CHARS = frozenset("\r\n\0")
_BAD_NAME_CHARS = frozenset(" \t\r\n\0:")


@dataclass(frozen=True)
class CallOptions:
    """What a call sets for itself; ``None`` / empty: the client's own."""

    timeout: float | None = None
    max_retries: int | None = None
    extra_headers: tuple[tuple[str, str | None], ...] = ()
    extra_query: tuple[tuple[str, Any], ...] = ()
    on_circuit_open: str | None = None

    @classmethod
    def of(
        cls,
        timeout: Any = None,
        max_retries: Any = None,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        on_circuit_open: str | None = None,
    ) -> CallOptions:
        """The options of one call's keyword arguments, checked; the shared
        :data:`DEFAULT_OPTIONS` when none is given."""
        if (
            timeout is None
            and max_retries is None
            and not extra_headers
            and not extra_query
            and on_circuit_open is None
        ):
            return DEFAULT_OPTIONS
        return cls(
            _timeout(timeout),
            _max_retries(max_retries),
            _headers(extra_headers),
            _query(extra_query),
            circuit_mode(on_circuit_open),
        )

    def over(self, base: CallOptions) -> CallOptions:
        """These options laid over ``base`` (a view's defaults): a value set
        here wins; headers (by name, in any case) and query parameters merge."""
        if base is DEFAULT_OPTIONS:
            return self
        if self is DEFAULT_OPTIONS:
            return base
        return CallOptions(
            base.timeout if self.timeout is None else self.timeout,
            base.max_retries if self.max_retries is None else self.max_retries,
            _merged(base.extra_headers, self.extra_headers, str.lower),
            _merged(base.extra_query, self.extra_query, str),
            base.on_circuit_open if self.on_circuit_open is None else self.on_circuit_open,
        )

    def secrets(self) -> tuple[str, ...]:
        """The header and query values this call sends: any may be a key that a
        server echoes back, so errors redact them too."""
        values = [value for _, value in self.extra_headers if isinstance(value, str)]
        for _, value in self.extra_query:
            values += [str(v) for v in (value if isinstance(value, tuple) else (value,))]
        return tuple(values)

    def describe(self) -> str:
        """``timeout=5, max_retries=0, extra_headers=[X-Trace]``: what is set, values of headers and query hidden."""
        parts = []
        if self.timeout is not None:
            parts.append(f"timeout={self.timeout:g}")
        if self.max_retries is not None:
            parts.append(f"max_retries={self.max_retries}")
        if self.extra_headers:
            parts.append(f"extra_headers=[{', '.join(name for name, _ in self.extra_headers)}]")
        if self.extra_query:
            parts.append(f"extra_query=[{', '.join(name for name, _ in self.extra_query)}]")
        if self.on_circuit_open is not None:
            parts.append(f"on_circuit_open={self.on_circuit_open}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"CallOptions({self.describe()})"


DEFAULT_OPTIONS = CallOptions()
"""No per-call options: the client's settings apply."""


def circuit_mode(value: Any) -> str | None:
    """``"fail"`` or ``"wait"`` (any case), or None: the client's."""
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in CIRCUIT_OPEN_MODES:
        raise InvalidInputError(
            f"on_circuit_open must be one of {', '.join(map(repr, CIRCUIT_OPEN_MODES))}, not {value!r:.40}"
        )
    return value.strip().lower()


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidInputError(
            f"timeout must be a number of seconds > 0 (each attempt's limit), not {value!r:.40}"
        )
    return float(value)


def _max_retries(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"max_retries must be a whole number >= 0, not {value!r:.40}")
    return value


def _headers(headers: Any) -> tuple[tuple[str, str | None], ...]:
    """Checked: a header name is a token, a value a one-line string (None removes it)."""
    items = _items("extra_headers", headers, "{'X-Trace': '1'}")
    for name, value in items:
        if not name or _BAD_NAME_CHARS & set(name):
            raise InvalidInputError(f"extra_headers: {name!r:.40} is not a header name")
        if value is not None and (not isinstance(value, str) or _BAD_HEADER_CHARS & set(value)):
            # the value is not shown: it may be a secret
            raise InvalidInputError(
                f"extra_headers[{name!r}] must be a one-line string (or None to remove the header)"
            )
    return _merged((), items, str.lower)


def _query(query: Any) -> tuple[tuple[str, Any], ...]:
    items = _items("extra_query", query, "{'api-version': '2024-10-21'}")
    checked = []
    for name, value in items:
        if isinstance(value, (list, tuple)):
            value = tuple(value)
            parts = value
        else:
            parts = (value,)
        if not name or not all(isinstance(part, _QUERY_SCALARS) for part in parts):
            raise InvalidInputError(
                f"extra_query[{name!r:.40}] must be a string, a number, a bool or a list of them"
            )
        checked.append((name, value))
    return _merged((), checked, str)


def _items(what: str, mapping: Any, example: str) -> list[tuple[str, Any]]:
    if mapping is None:
        return []
    if not isinstance(mapping, Mapping) or not all(isinstance(name, str) for name in mapping):
        raise InvalidInputError(
            f"{what} must be a dict of names to values, like {example}, not {type(mapping).__name__}"
        )
    return list(mapping.items())


def _merged(base: Any, extra: Any, fold: Any) -> tuple[Any, ...]:
    """``base`` then ``extra``, a later name replacing an earlier one equal under ``fold``."""
    merged: dict[str, Any] = {}
    for name, value in (*base, *extra):
        merged.pop(fold(name), None)
        merged[fold(name)] = (name, value)
    return tuple(merged.values())
