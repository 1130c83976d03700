"""A backend's keys: the secrets and endpoints, beside the policy that picks.

The :class:`~..resilience.keys.KeyPool` decides which key may take an
attempt now and when one next can; it only ever sees names.  The secrets,
and each key's base URL when it is another endpoint, stay here.  The seed's
single key is one more key, named by the fingerprint of its secret (so
statistics look the same with one key as before), or ``"default"`` when
there is no secret at all.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..resilience.breaker import BreakerOptions
from ..resilience.errors import ApiError, AuthenticationError, SettingError
from ..resilience.keys import (
    OUTCOME_AUTH_FAILURE,
    OUTCOME_RATE_LIMITED,
    SCOPE_KEY,
    KeyOptions,
    KeyPool,
    Lease,
    Outcome,
    Readiness,
)
from ..resilience.retry import believed_retry_after, over_cap
from .request import Request

__all__ = ["KeyConfig", "KeyRing", "NO_KEY_NAME", "key_fingerprint"]

log = logging.getLogger("ipfs_accelerate_py.keys")

NO_KEY_NAME = "default"
_CHARS_PER_TOKEN = 4


@functools.lru_cache(maxsize=256)
def key_fingerprint(api_key: str | None) -> str | None:
    """How a key without a name is reported: 8 hex digits of its SHA-256."""
    if not api_key:
        return None
    return hashlib.sha256(api_key.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class KeyConfig:
    """One key as configured: its options, its secret, its endpoint."""

    options: KeyOptions
    secret: str | None = None
    base_url: str | None = None

    def __repr__(self) -> str:  # never the secret
        return f"KeyConfig({self.options.name!r}, base_url={self.base_url!r})"


class KeyRing:
    def __init__(self, strategy: str, breaker_options: BreakerOptions, now: float) -> None:
        self.pool = KeyPool([], strategy, breaker_options=breaker_options, now=now)
        self._secrets: dict[str, str | None] = {}
        self._base_urls: dict[str, str | None] = {}
        # a key's secret and endpoint by name (None: unknown), read for every attempt: the
        # dicts' own get, no Python call between (the dicts are changed, never replaced)
        self.secret: Callable[[str], str | None] = self._secrets.get
        self.base_url: Callable[[str], str | None] = self._base_urls.get
        self._any_secret = False
        self._default: str | None = None  # the pool name of the seed's single key
        self._counts_tokens = False
        self.several = False  # more than one key: hints are worth reading (see hints())

    # ------------------------------------------------------------ config

    def add(self, config: KeyConfig, now: float) -> None:
        name = config.options.name
        if name in self._secrets:
            raise SettingError(
                "api_keys", name, "a key name not used yet (remove the old key first)"
            )
        if self._default is not None and self._secrets.get(self._default) is None:
            self.remove(self._default)  # the keyless slot gives way to a real key
        self.pool.add(config.options, now)
        self._secrets[name] = config.secret
        self._base_urls[name] = config.base_url
        self._counts_tokens = self._counts_tokens or config.options.tpm is not None
        self._keys_changed()

    def remove(self, name: str) -> None:
        if name not in self._secrets:
            raise SettingError(
                "api_keys", name, f"the name of a configured key: {', '.join(self._secrets)}"
            )
        self.pool.remove(name)
        del self._secrets[name], self._base_urls[name]
        self._keys_changed()
        if name == self._default:
            self._default = None

    def _keys_changed(self) -> None:
        self.several = len(self._secrets) > 1
        self._any_secret = any(self._secrets.values())

    def set_default(self, secret: str | None, now: float) -> None:
        """The seed's single key (``client.api_key``): added, replaced or dropped."""
        if self._default is not None:
            self.remove(self._default)
        if secret is None and self._secrets:
            return  # other keys serve; no anonymous slot beside them
        name = key_fingerprint(secret) or NO_KEY_NAME
        if name in self._secrets:  # the same secret is configured under a name already
            return
        self.add(KeyConfig(KeyOptions(name), secret), now)
        self._default = name

    @property
    def default_secret(self) -> str | None:
        return self._secrets.get(self._default) if self._default else None

    def has_secret(self) -> bool:
        """Whether any key has a secret to send."""
        return self._any_secret

    def names(self) -> list[str]:
        return list(self._secrets)

    def usable_besides(self, name: str) -> int:
        """How many keys other than ``name`` are not disabled."""
        pool = self.pool
        return sum(
            1 for other in self._secrets if other != name and pool.disabled_reason(other) is None
        )

    # ---------------------------------------------------------- dispatch

    def tokens(self, req: Request) -> int:
        """The estimate a tpm budget is charged before the answer says."""
        if not self._counts_tokens or req.data is None:
            return 0
        if req.tokens is None:
            req.tokens = len(json.dumps(req.data, default=str)) // _CHARS_PER_TOKEN + int(
                req.data.get("max_tokens") or 0
            )
        return req.tokens

    def lease(self, req: Request, now: float, rng: random.Random) -> Lease | None:
        """A key for ``req``'s next attempt, avoiding the key that last
        refused it when another is free; None when none may go now."""
        tokens = self.tokens(req) if self._counts_tokens else 0
        if req.avoid_key is not None:
            lease = self.pool.choose(now, tokens, rng, frozenset((req.avoid_key,)), req.model)
            if lease is not None:
                return lease
        return self.pool.choose(now, tokens, rng, _NO_KEYS, req.model)

    def readiness(self, req: Request, now: float) -> Readiness | None:
        """When a key could first take ``req``, which, and what holds it until then."""
        return self.pool.next_ready(now, self.tokens(req), model=req.model)

    def free_for_others(self, req: Request, now: float) -> bool:
        """Whether some key could take a request like ``req`` now but for the
        cooldown of ``req``'s own model (then requests for other models may go)."""
        if req.model is None:
            return False
        ready = self.pool.next_ready_at(now, self.tokens(req))
        return ready is not None and ready <= now

    def hints(
        self, name: str | None, provider: Any, headers: Any, now: float, model: str | None = None
    ) -> None:
        """What the provider's headers say of the key's remaining quota, for
        choosing among several keys (with one key there is nothing to choose:
        the server's own 429 and Retry-After then decide)."""
        if name is not None and self.several:
            found = provider.rate_limit_hints(headers)
            if found:
                self.pool.update_hints(name, found, now, model)

    def another_usable(self, name: str, req: Request, now: float) -> bool:
        """Whether a key other than ``name`` could ever take ``req`` (one not disabled)."""
        if len(self.pool) < 2:
            return False
        return any(
            state["disabled"] is None
            for other, state in self.pool.snapshot(now).items()
            if other != name
        )

    def release(
        self,
        lease: Lease,
        now: float,
        error: BaseException | None,
        usage: tuple[int, int],
        cooldown: float | None = None,
    ) -> tuple[float, str | None] | None:
        """Give ``lease`` back with how its attempt ended; a 429 without
        Retry-After cools its scope for ``cooldown`` seconds.  Returns how
        long the key rests and for which model (None: key-wide) when it
        cools, else None."""
        if error is None:
            self.pool.release_success(lease, now, usage[0], usage[1])
            return None
        if isinstance(error, ApiError):
            outcome = Outcome.from_error(error, cooldown)
            if outcome.kind == OUTCOME_AUTH_FAILURE and len(self.pool) == 1:
                # the only key: each request reports the server's own 401/403 (and a new
                # client.api_key starts afresh); disabling it would only hide that
                outcome = _IGNORED
        else:
            outcome = _IGNORED
        already_disabled = (
            outcome.kind == OUTCOME_AUTH_FAILURE
            and self.pool.disabled_reason(lease.name) is not None
        )
        self.pool.release(lease, now, outcome)
        if outcome.kind == OUTCOME_RATE_LIMITED:
            self._log_cooling(lease, outcome)
            rest = believed_retry_after(outcome.retry_after, self.pool.max_cooldown)
            model = None if outcome.scope == SCOPE_KEY else lease.model
            return (self._fallback(outcome) if rest is None else rest), model
        if (
            outcome.kind == OUTCOME_AUTH_FAILURE and not already_disabled
        ):  # once a key, not once a request in flight
            log.warning(
                "key %s disabled: %s; the other keys carry on (replace it, or remove it with client.remove_api_key())",
                lease.name,
                outcome.reason,
            )
        return None

    def _log_cooling(self, lease: Lease, outcome: Outcome) -> None:
        scope = (
            "" if outcome.scope == SCOPE_KEY or lease.model is None else f" for model {lease.model}"
        )
        cap = self.pool.max_cooldown
        if over_cap(outcome.retry_after, cap):
            log.warning(
                "key %s%s: the server asked to cool it for %.6gs after HTTP 429, over max_retry_after (%.3gs); "
                "not believed: cooling %.3gs (backoff) instead",
                lease.name,
                scope,
                outcome.retry_after,
                cap,
                self._fallback(outcome),
            )
        elif outcome.retry_after is not None:
            log.info(
                "key %s%s cooling %.3gs after HTTP 429 (Retry-After)",
                lease.name,
                scope,
                outcome.retry_after,
            )
        else:
            log.info(
                "key %s%s cooling %.3gs after HTTP 429 (backoff, no Retry-After)",
                lease.name,
                scope,
                self._fallback(outcome),
            )

    def _fallback(self, outcome: Outcome) -> float:
        return self.pool.default_cooldown if outcome.cooldown is None else outcome.cooldown

    def all_disabled_error(self, provider: str, now: float) -> AuthenticationError | None:
        """An error naming every key and why, when no key is left to try."""
        snapshot = self.pool.snapshot(now)
        if not snapshot or any(state["disabled"] is None for state in snapshot.values()):
            return None
        reasons = ", ".join(f"{name}: {state['disabled']}" for name, state in snapshot.items())
        return AuthenticationError(
            f"every key of this backend is disabled ({reasons}); add a working key with client.add_api_key()",
            provider=provider,
        )

    def snapshot(self, now: float) -> dict[str, Any]:
        return self.pool.snapshot(now)


# An Outcome is frozen (immutable), so the common one is built once and shared (a
# success goes back with KeyPool.release_success, which builds none).
_IGNORED = Outcome.ignored()
_NO_KEYS: frozenset[str] = frozenset()  # choose() excluding no key
