"""What the pool is told: a key's options, and how an attempt on it ended.

:class:`KeyOptions` describes one key (limits, weight; a name, never the secret);
:class:`Outcome` is what the engine gives back with each lease, built from a typed error by
:meth:`Outcome.from_error`.  The ``DEFAULT_*``, ``OUTCOME_*`` and ``SCOPE_*`` constants live
here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ApiError, AuthenticationError, RateLimitError, SettingError
from ..retry import DEFAULT_MAX_RETRY_AFTER, believed_retry_after
from ..validation import require_int, require_number

DEFAULT_WEIGHT = 1.0
DEFAULT_COOLDOWN = 1.0  # seconds a key rests after a 429 that gave no Retry-After
DEFAULT_MAX_COOLDOWN = DEFAULT_MAX_RETRY_AFTER  # the longest rest a server is believed for

OUTCOME_SUCCESS = "success"
OUTCOME_RATE_LIMITED = "rate_limited"
OUTCOME_SERVER_FAILURE = "server_failure"
OUTCOME_AUTH_FAILURE = "auth_failure"
OUTCOME_IGNORED = "ignored"
OUTCOMES = frozenset(
    {
        OUTCOME_SUCCESS,
        OUTCOME_RATE_LIMITED,
        OUTCOME_SERVER_FAILURE,
        OUTCOME_AUTH_FAILURE,
        OUTCOME_IGNORED,
    }
)

SCOPE_MODEL = "model"  # a rate limit on one (key, model) pair
SCOPE_KEY = "key"  # a rate limit on the whole key, whatever the model
SCOPES = frozenset({SCOPE_MODEL, SCOPE_KEY})


# ---------------------------------------------------------------- options and outcomes


@dataclass(frozen=True)
class KeyOptions:
    """One API key (or endpoint) of a backend; validated on construction.

    ``name`` is how the key is reported, never the secret.  ``None`` for
    ``max_concurrent``, ``rpm`` or ``tpm`` means no cap; ``weight`` is used
    by the weighted strategy only.
    """

    name: str
    max_concurrent: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    weight: float = DEFAULT_WEIGHT

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SettingError(
                "name", self.name, "a non-empty string naming the key (never the secret)"
            )
        require_int("max_concurrent", self.max_concurrent, 1, optional=True)
        require_number("rpm", self.rpm, exclusive=True, optional=True)
        require_number("tpm", self.tpm, exclusive=True, optional=True)
        require_number("weight", self.weight, exclusive=True)


def _count_or_none(value: Any) -> bool:
    return value is None or (type(value) is int and value >= 0)


@dataclass(frozen=True)
class Outcome:
    """How an attempt on a leased key ended; build it with the class methods.

    ``tokens_in``/``tokens_out``: the usage the provider reported, if any
    (the sum corrects the token bucket).  ``retry_after``: seconds the
    server asked for, for ``rate_limited``; ``cooldown``: our own figure,
    used when the server asked for none or for more than the pool believes
    (None: the pool's default); ``scope``: what it cools, the (key, model) pair
    (``"model"``, the default) or the whole key (``"key"``).  ``reason``: why
    a key is disabled, for ``auth_failure``.
    """

    kind: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    retry_after: float | None = None
    reason: str | None = None
    scope: str = SCOPE_MODEL
    cooldown: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in OUTCOMES:
            raise SettingError("kind", self.kind, f"one of {', '.join(sorted(OUTCOMES))}")
        if self.scope not in SCOPES:
            raise SettingError("scope", self.scope, f"one of {', '.join(sorted(SCOPES))}")
        if (
            self.retry_after is None
            and self.cooldown is None
            and _count_or_none(self.tokens_in)
            and _count_or_none(self.tokens_out)
        ):
            return  # nothing more to check (most outcomes)
        require_int("tokens_in", self.tokens_in, 0, optional=True)
        require_int("tokens_out", self.tokens_out, 0, optional=True)
        require_number("retry_after", self.retry_after, optional=True)
        require_number("cooldown", self.cooldown, optional=True)

    @classmethod
    def success(cls, tokens_in: int | None = None, tokens_out: int | None = None) -> Outcome:
        return cls(OUTCOME_SUCCESS, tokens_in, tokens_out)

    @classmethod
    def rate_limited(
        cls,
        retry_after: float | None = None,
        scope: str = SCOPE_MODEL,
        cooldown: float | None = None,
    ) -> Outcome:
        """A 429: the (key, model) pair (``scope="model"``) or the whole key (``scope="key"``)
        cools down for ``retry_after`` seconds, as the server asked; for ``cooldown``
        when it asked for none or for more than the pool's ``max_cooldown`` (None:
        the pool's default cooldown)."""
        return cls(OUTCOME_RATE_LIMITED, retry_after=retry_after, scope=scope, cooldown=cooldown)

    @classmethod
    def server_failure(cls) -> Outcome:
        """A 5xx, timeout, connection error or malformed answer: a failure for the key's breaker."""
        return cls(OUTCOME_SERVER_FAILURE)

    @classmethod
    def auth_failure(cls, reason: str = "authentication failed") -> Outcome:
        """A 401/403: the key is disabled with ``reason`` (which must not contain the secret)."""
        return cls(OUTCOME_AUTH_FAILURE, reason=reason)

    @classmethod
    def ignored(cls, tokens_in: int | None = None, tokens_out: int | None = None) -> Outcome:
        """A client error, a cancellation, a stream closed early: nothing said about the key."""
        return cls(OUTCOME_IGNORED, tokens_in, tokens_out)

    @classmethod
    def from_error(cls, error: ApiError, cooldown: float | None = None) -> Outcome:
        """The outcome a typed error stands for.  The reason names the class and status only,
        never the provider's text (which may quote part of a key).  A 429 without
        Retry-After (or one over the pool's cap) cools for ``cooldown`` (None: the
        pool's default)."""
        if isinstance(error, RateLimitError):
            asked = believed_retry_after(error.retry_after, None)  # NaN, infinity: as if none
            return cls.rate_limited(asked, SCOPE_KEY if error.key_wide else SCOPE_MODEL, cooldown)
        if isinstance(error, AuthenticationError):
            status = f" (HTTP {error.status})" if error.status is not None else ""
            return cls.auth_failure(f"{type(error).__name__}{status}")
        if error.breaker_failure:
            return cls.server_failure()
        return cls.ignored()

    @property
    def usage(self) -> int | None:
        """Tokens used in all, or None when the provider reported none."""
        if self.tokens_in is None and self.tokens_out is None:
            return None
        return (self.tokens_in or 0) + (self.tokens_out or 0)
