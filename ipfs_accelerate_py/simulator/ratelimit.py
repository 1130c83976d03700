"""Per-key request and token limits on a fixed window; each format renders the headers.

Each key (by fingerprint) has its own window.  The window opens at the key's
first request and lasts ``window`` seconds; the first request after it ends
opens a new one with zero usage.  A request is admitted when one more request
stays within ``rpm`` and its token cost stays within ``tpm``; an admitted
request consumes both, a refused one consumes nothing.  A refusal says which
limit (``"requests"`` or ``"tokens"``) and waits until the window ends.
What a key has left is a :class:`~.wireformat.RateState`, which the wire
format turns into its rate-limit headers.

Not thread-safe by itself: the caller holds its lock.  Time comes in as
``now`` (monotonic seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .wireformat import Budget, Headers, RateState

__all__ = ["FixedWindows", "Verdict", "format_duration", "retry_after_headers"]

MAX_TRACKED_KEYS = 10_000


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: ``"250ms"``, ``"12.5s"``, ``"1m0s"``."""
    seconds = round(max(0.0, seconds), 3)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def retry_after_headers(seconds: float, *, exact: bool) -> Headers:
    """``retry-after`` and ``retry-after-ms`` for a wait of ``seconds``.

    ``exact`` (a configured override) sends the number as given, e.g. ``0.2``;
    otherwise ``retry-after`` is whole seconds rounded up, as HTTP says.
    """
    text = _number_text(seconds) if exact else str(math.ceil(seconds))
    return {"retry-after": text, "retry-after-ms": str(round(seconds * 1000))}


@dataclass
class _Window:
    start: float
    requests: int = 0
    tokens: int = 0


@dataclass(frozen=True)
class Verdict:
    """The answer for one request: admitted or not, and what the key has left."""

    allowed: bool
    state: RateState
    exceeded: str | None = None  # "requests" or "tokens" when refused; None when allowed
    retry_after: float = 0.0


class FixedWindows:
    """Fixed one-window-per-key counters (see the module docstring)."""

    def __init__(self, max_keys: int = MAX_TRACKED_KEYS) -> None:
        self._windows: dict[str, _Window] = {}
        self._max_keys = max_keys

    def clear(self) -> None:
        self._windows.clear()

    def _current(self, ident: str, now: float, window: float) -> _Window:
        current = self._windows.get(ident)
        if current is None or now >= current.start + window:
            if current is None and len(self._windows) >= self._max_keys:
                self._evict(now, window)
            current = _Window(start=now)
            self._windows[ident] = current
        return current

    def _evict(self, now: float, window: float) -> None:
        expired = [k for k, w in self._windows.items() if now >= w.start + window]
        for key in expired or list(self._windows)[: self._max_keys // 10 or 1]:
            del self._windows[key]

    def admit(
        self, ident: str, rpm: int | None, tpm: int | None, cost: int, now: float, window: float
    ) -> Verdict:
        """Admit one request of ``cost`` tokens for ``ident``, or refuse it."""
        current = self._current(ident, now, window)
        exceeded = None
        if rpm is not None and current.requests + 1 > rpm:
            exceeded = "requests"
        elif tpm is not None and current.tokens + cost > tpm:
            exceeded = "tokens"
        if exceeded is None:
            current.requests += 1
            current.tokens += cost
        state = self._state(current, rpm, tpm, now, window)
        if exceeded is None:
            return Verdict(True, state)
        return Verdict(False, state, exceeded, current.start + window - now)

    def state(
        self, ident: str, rpm: int | None, tpm: int | None, now: float, window: float
    ) -> RateState:
        """What ``ident`` has left, without consuming anything."""
        current = self._windows.get(ident)
        if current is None or now >= current.start + window:
            current = _Window(start=now)
        return self._state(current, rpm, tpm, now, window)

    @staticmethod
    def _state(
        current: _Window, rpm: int | None, tpm: int | None, now: float, window: float
    ) -> RateState:
        left = current.start + window - now
        requests = tokens = None
        if rpm is not None:
            requests = Budget(
                rpm, max(0, rpm - current.requests), left if current.requests else 0.0
            )
        if tpm is not None:
            tokens = Budget(tpm, max(0, tpm - current.tokens), left if current.tokens else 0.0)
        return RateState(requests, tokens)
