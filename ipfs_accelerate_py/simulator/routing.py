"""Route lookup over every wire format: exact paths by one dict lookup, patterns in order.

Built once at start-up from the formats; two formats (or one twice)
declaring the same method and pattern is refused with :class:`RouteConflict`.
Overlapping but different patterns are allowed: an exact path wins over a
pattern, and patterns are tried most literal first (a greedy ``{name+}``
last), so ``POST /v1/models/{model}:predict`` and ``GET /v1/models/{model+}``
live side by side.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote

from .wireformat import Route, Segment, WireFormat, compile_pattern

__all__ = ["RouteConflict", "Router"]

_NO_PARAMS: dict[str, str] = {}

Compiled = tuple[Segment, ...]
Resolution = tuple[WireFormat, Route, dict[str, str]] | tuple[WireFormat, None, list[str]]
"""``(format, route, path parameters)``, or ``(format, None, allowed methods)``."""
_Pattern = tuple[tuple[bool, int, int], Compiled, WireFormat, Route]


class RouteConflict(ValueError):
    """Two formats claim the same method and path pattern (or share a name)."""


def _canonical(pattern: str) -> str:
    parts = []
    for segment in compile_pattern(pattern):
        if isinstance(segment, str):
            parts.append(segment)
        else:
            prefix, _, greedy, suffix = segment
            parts.append(prefix + ("{+}" if greedy else "{}") + suffix)
    return "/" + "/".join(parts)


def _specificity(compiled: Compiled) -> tuple[bool, int, int]:
    greedy = any(not isinstance(s, str) and s[2] for s in compiled)
    literal = sum(len(s) if isinstance(s, str) else len(s[0]) + len(s[3]) for s in compiled)
    return (greedy, -len(compiled), -literal)


def _match(compiled: Compiled, segments: list[str]) -> dict[str, str] | None:
    count = len(compiled)
    last = compiled[-1]
    greedy = not isinstance(last, str) and last[2]
    if len(segments) != count and not (greedy and len(segments) >= count):
        return None
    params: dict[str, str] = {}
    for index, want in enumerate(compiled):
        if isinstance(want, str):
            if segments[index] != want:
                return None
            continue
        prefix, name, is_greedy, suffix = want
        got = "/".join(segments[index:]) if is_greedy else segments[index]
        if (
            len(got) <= len(prefix) + len(suffix)
            or not got.startswith(prefix)
            or not got.endswith(suffix)
        ):
            return None
        params[name] = unquote(got[len(prefix) : len(got) - len(suffix)])
    return params


class Router:
    """Finds ``(format, route, params)`` for a method and a path."""

    def __init__(self, formats: Iterable[WireFormat]) -> None:
        self.formats: dict[str, WireFormat] = {}
        self._exact: dict[str, dict[str, tuple[WireFormat, Route, dict[str, str]]]] = {}
        self._patterns: list[_Pattern] = []
        owners: dict[tuple[str, str], str] = {}
        for fmt in formats:
            if fmt.name in self.formats:
                raise RouteConflict(f"two wire formats are named {fmt.name!r}")
            self.formats[fmt.name] = fmt
            for route in fmt.routes:
                self._add(fmt, route, owners)
        self._patterns.sort(key=lambda entry: entry[0])

    def _add(self, fmt: WireFormat, route: Route, owners: dict[tuple[str, str], str]) -> None:
        ident = (route.method, _canonical(route.pattern))
        other = owners.get(ident)
        if other is not None:
            raise RouteConflict(
                f"route {route.method} {route.pattern} is declared by wire "
                f"formats {other!r} and {fmt.name!r}; one path and method "
                "belongs to one format"
            )
        owners[ident] = fmt.name
        if route.is_exact:
            self._exact.setdefault(route.pattern, {})[route.method] = (fmt, route, _NO_PARAMS)
            return
        compiled = compile_pattern(route.pattern)
        self._patterns.append((_specificity(compiled), compiled, fmt, route))

    def resolve(self, method: str, path: str) -> Resolution | None:
        """``(format, route, params)``; ``(format, None, allowed methods)`` when only the
        method is wrong; None when no format claims the path."""
        methods = self._exact.get(path)
        if methods is not None:
            found = methods.get(method)
            if found is not None:
                return found
        allowed: list[str] = list(methods) if methods else []
        owner = next(iter(methods.values()))[0] if methods else None
        if self._patterns:
            segments = path[1:].split("/")
            for _, compiled, fmt, route in self._patterns:
                params = _match(compiled, segments)
                if params is None:
                    continue
                if route.method == method:
                    return fmt, route, params
                allowed.append(route.method)
                owner = owner or fmt
        if owner is None:
            return None
        return owner, None, sorted(set(allowed))

    def routes(self) -> list[tuple[str, str, str]]:
        """``(format name, method, pattern)`` of every route, sorted by pattern."""
        out = [
            (fmt.name, m, route.pattern)
            for methods in self._exact.values()
            for m, (fmt, route, _) in methods.items()
        ]
        out += [(fmt.name, route.method, route.pattern) for _, _, fmt, route in self._patterns]
        return sorted(out, key=lambda row: (row[2], row[1]))
