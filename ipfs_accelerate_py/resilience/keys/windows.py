"""Rate windows: a key's own rpm/tpm budgets and what the provider says is left.

A :class:`_TokenBucket` is a sliding rate, not a fixed minute window: it holds up to
``capacity`` and refills continuously at ``rate`` per second (``rpm / 60``, ``tpm / 60``).  The
request bucket holds ``max(rpm, 1)``.  An attempt takes what it needs, at most the capacity (an
estimate above ``tpm`` waits for a full bucket, not forever); a usage reported afterwards
refunds (up to capacity) or charges the difference, possibly into a debt that refill pays back.
A :class:`_QuotaHint` keeps what a provider's rate-limit headers last said of one limit.
"""

from __future__ import annotations

from typing import Any

from ..errors import SettingError
from ..validation import require_number

SECONDS_PER_MINUTE = 60.0
MIN_QUOTA_FRACTION = 1e-3  # the least share of its quota a candidate is credited with
_SLACK = 1e-9  # relative tolerance of a bucket's level, so that next_ready_at is exact in floats
_HINT_KINDS = ("requests", "tokens")


class _TokenBucket:
    """Holds up to ``capacity``; refills continuously at ``rate`` per second; may hold a debt (< 0)."""

    __slots__ = ("capacity", "rate", "level", "updated")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity, self.rate, self.level, self.updated = capacity, rate, capacity, now

    def refill(self, now: float) -> None:
        if now > self.updated:  # a `now` from the past (threads racing) adds nothing
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def need(self, amount: float) -> float:
        return min(amount, self.capacity)

    def ready_at(self, amount: float, now: float) -> float:
        """The earliest time ``amount`` fits (``now`` if it fits now)."""
        self.refill(now)
        short = self.need(amount) - self.level
        if short <= _SLACK * max(1.0, self.capacity):
            return now
        return now + short / self.rate

    def take(self, amount: float) -> float:
        """Take what ``amount`` needs (it fits: checked by ``ready_at``); returns what was taken."""
        taken = self.need(amount)
        self.level = max(0.0, self.level - taken)  # it fitted: below zero only by the slack
        return taken

    def correct(self, difference: float) -> None:
        """Give back (> 0, up to capacity) or charge (< 0, possibly into debt)."""
        self.level = min(self.capacity, self.level + difference)

    def resize(self, capacity: float, rate: float, now: float) -> None:
        self.refill(now)
        self.capacity, self.rate = capacity, rate
        self.level = min(self.level, capacity)


def _request_bucket(rpm: float | None, now: float) -> _TokenBucket | None:
    return None if rpm is None else _TokenBucket(max(rpm, 1.0), rpm / SECONDS_PER_MINUTE, now)


def _tokens_bucket(tpm: float | None, now: float) -> _TokenBucket | None:
    return None if tpm is None else _TokenBucket(tpm, tpm / SECONDS_PER_MINUTE, now)


def _resized(
    bucket: _TokenBucket | None, fresh: _TokenBucket | None, now: float
) -> _TokenBucket | None:
    """``bucket`` with ``fresh``'s limits, keeping its level; ``fresh`` if there was none."""
    if bucket is None or fresh is None:
        return fresh
    bucket.resize(fresh.capacity, fresh.rate, now)
    return bucket


def _hint_number(value: Any) -> float | None:
    """A usable figure from a provider header: a finite number >= 0, else None (headers are not trusted)."""
    try:
        return require_number("hint", value)
    except SettingError:
        return None


class _QuotaHint:
    """What the provider last said of one limit: remaining, until when, and the limit (known or estimated).

    Without a ``*_limit`` hint the limit is estimated as the most ever seen
    remaining.  A hint is forgotten at its reset (the quota is presumed back).
    """

    __slots__ = ("remaining", "reset_at", "limit")

    def __init__(self) -> None:
        self.remaining: float | None = None
        self.reset_at: float | None = None
        self.limit: float | None = None

    def update(
        self, remaining: float | None, reset: float | None, limit: float | None, now: float
    ) -> None:
        if limit is not None and limit > 0:
            self.limit = limit
        if remaining is not None:
            self.remaining = remaining
            self.reset_at = None if reset is None else now + reset
            if limit is None:
                self.limit = max(self.limit or 0.0, remaining)

    def current(self, now: float) -> float | None:
        if self.remaining is None or (self.reset_at is not None and now >= self.reset_at):
            return None
        return self.remaining

    def fraction(self, now: float) -> float:
        remaining = self.current(now)
        if remaining is None or not self.limit:
            return 1.0
        return max(MIN_QUOTA_FRACTION, min(1.0, remaining / self.limit))


def _available(bucket: _TokenBucket | None, now: float) -> float | None:
    if bucket is None:
        return None
    bucket.refill(now)
    return bucket.level
