"""Cooldowns: how long a key rests after a rate limit, and over what scope.

A rate limit has a scope: a 429 on a request that names a model cools that (key, model) pair
only, since providers limit per key *and* model; a key-wide signal (an exhausted quota) or a
request naming no model cools the whole key.  A rest only lengthens, and one ending by ``now``
is none; pairs are forgotten as they expire, so memory follows what is cooling.

How long: as the server asked (Retry-After, or a quota hint's reset) when that is believed,
i.e. finite, >= 0 and not over the pool's ``max_cooldown``; else the client's own figure (the
outcome's ``cooldown``, else the pool's ``default_cooldown``).  The cap bounds what a server is
believed, not the client's own backoff: a cap of 0 ("believe no Retry-After") must not leave a
rate-limited key uncooled.
"""

from __future__ import annotations

from ..retry import believed_retry_after

_INF = float("inf")

_STARTED = "started"  # a rest began where none was running for that scope
_LENGTHENED = "lengthened"  # a running rest now ends later


def rest_for(
    asked: float | None, fallback: float | None, max_cooldown: float, default_cooldown: float
) -> tuple[float, bool]:
    """Seconds to rest for a server's ``asked`` rest, and whether ``asked`` was refused for
    being over ``max_cooldown`` (so the key's ``retry_after_over_cap`` counts it).  Not
    believed, or not asked: ``fallback`` (None: ``default_cooldown``)."""
    wait = believed_retry_after(asked, max_cooldown)
    if wait is not None:
        return wait, False
    return (default_cooldown if fallback is None else fallback), asked is not None


class Cooldowns:
    """The rests running on one key: the whole key's (``key_until``, ``-inf`` when none ever
    ran) and each cooling model's (``models``: model -> until when).  ``latest`` is when the
    last of all the rests ever begun ends (``-inf``: none): from then on none is running."""

    __slots__ = ("key_until", "models", "latest")

    def __init__(self) -> None:
        self.key_until = -_INF
        self.models: dict[str, float] = {}
        self.latest = -_INF

    def model_until(self, model: str | None) -> float:
        """When the (key, ``model``) pair's own rest ends; ``-inf`` for none or no model."""
        return -_INF if model is None else self.models.get(model, -_INF)

    def cool(self, until: float, now: float, model: str | None = None) -> str | None:
        """Rest until ``until``: the whole key (``model`` None), or only for ``model``.
        ``"started"`` or ``"lengthened"`` when this began or lengthened a rest, None
        when it changed nothing (it ends no later than the running one, or by ``now``)."""
        if model is None:
            current = self.key_until
        else:
            for name in [m for m, end in self.models.items() if end <= now]:  # ended: forget
                del self.models[name]
            current = self.models.get(model, -_INF)
        if until <= current or until <= now:
            return None
        if model is None:
            self.key_until = until
        else:
            self.models[model] = until
        if until > self.latest:
            self.latest = until
        return _STARTED if now >= current else _LENGTHENED

    def report(self, now: float) -> tuple[float, dict[str, float]]:
        """Seconds from ``now`` until the whole key's rest ends (0.0 when none) and, per model
        still cooling, until its own does."""
        models = {model: end - now for model, end in sorted(self.models.items()) if end > now}
        return max(0.0, self.key_until - now), models
