"""What a client tells about itself: statistics, the report, the circuit, the queue.

The seed's monitoring surface: ``get_stats()``, ``generate_report()``,
``reset_stats()``, ``update_stats()`` and ``track_request_result()`` for
operations made outside the queue, ``circuit_state``,
``check_circuit_breaker()``, ``add_circuit_listener()``, and snapshots of the
queue (``request_queue``, ``current_requests``, ``queue_lock``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ..resilience import errors
from ..resilience.breaker import STATE_OPEN
from ..resilience.errors import ApiError, InvalidInputError, SettingError
from ..resilience.stats import RequestRecord
from ..resilience.validation import require_int, require_number
from .state import ClientState, shown

__all__ = ["NOT_SERVICE_FAILURES", "Monitoring", "not_service_failures"]


def not_service_failures() -> frozenset[str]:
    """The ``error_type`` names that ``track_request_result`` does not count
    against the circuit: every error class of ``resilience/errors.py`` that
    the engine itself does not count (``breaker_failure`` False: rate limits,
    client errors, cancellations, ...), by its class name and by the ``kind``
    it introduces, in lower case."""
    names: set[str] = set()
    for name in errors.__all__:
        cls = getattr(errors, name)
        if not isinstance(cls, type) or not issubclass(cls, ApiError) or cls is ApiError:
            continue
        if not cls.breaker_failure:
            names.add(cls.__name__.lower())
            if "kind" in vars(cls):
                names.add(cls.kind)
    return frozenset(names)


NOT_SERVICE_FAILURES = not_service_failures()


class Monitoring(ClientState):
    """Statistics, the report and the circuit of one client."""

    # ---------------------------------------------------- circuit breaker

    @property
    def circuit_state(self) -> str:
        """``"CLOSED"``, ``"OPEN"`` or ``"HALF_OPEN"``."""
        return self._engine.breaker.state(self._clock.now())

    def add_circuit_listener(
        self, listener: Callable[[str, str, ApiError | None], None]
    ) -> Callable[[], None]:
        """Call ``listener(old_state, new_state, last_failure)`` on each
        transition of this client's circuit, in the thread that made it
        (``last_failure``: the last failure the breaker counted, or None).
        Returns the function that removes it."""
        engine = self._engine

        def forward(old: str, new: str, now: float) -> None:
            listener(old, new, engine.last_failure)

        engine.breaker.add_listener(forward)
        return lambda: engine.breaker.remove_listener(forward)

    def check_circuit_breaker(self) -> bool:
        """True when a request may go now (CLOSED, or HALF_OPEN with a probe free)."""
        return self.circuit_state != STATE_OPEN

    def track_request_result(self, success: bool, error_type: str | None = None) -> None:
        """Record an outcome of an operation made outside this client: it
        feeds the breaker (a failure counts unless ``error_type`` names an
        error the engine does not count either, by class name or kind: a
        rate limit, a client error, a cancellation; see
        :func:`not_service_failures`) and the statistics."""
        now = self._clock.now()
        breaker = self._engine.breaker
        if success:
            breaker.on_success(now)
        elif error_type and str(error_type).lower() in NOT_SERVICE_FAILURES:
            breaker.on_ignored(now)
        else:
            breaker.on_failure(now)
        self._engine.stats.record_external(
            bool(success), None if success else str(error_type or "error")
        )

    # -------------------------------------------------------------- stats

    def update_stats(self, stats_update: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Record one finished request made outside the queue (thread-safe).

        Fields: ``success`` (bool, required), ``response_time`` and
        ``queue_wait`` (seconds >= 0), ``model``, ``error_type``, ``endpoint``
        (text), ``tokens_in``, ``tokens_out`` (whole numbers >= 0),
        ``attempts`` (>= 1).  Anything else is refused with an
        :class:`InvalidInputError` naming the field, and nothing is recorded.
        """
        self._engine.stats.record_request(stats_record(stats_update, fields))

    def get_stats(self) -> dict[str, Any]:
        """Counters and figures since the last ``reset_stats()``."""
        stats = self._engine.stats.snapshot()
        engine = self._engine.snapshot()
        stats.update(
            current_queue_size=engine["queue_size"],
            queue_by_priority=engine["queue_by_priority"],
            queue_capacity=engine["queue_capacity"],
            in_flight=engine["in_flight"],
            max_concurrent_requests=engine["max_concurrent_requests"],
            circuit_state=engine["circuit_breaker"]["state"],
            key_pool=engine["key_pool"],
        )
        return stats

    def generate_report(self, include_details: bool = False) -> dict[str, Any]:
        stats = self.get_stats()
        engine = self._engine.snapshot()
        settings = self._settings
        report: dict[str, Any] = {
            "api": self.provider.name,
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock.wall())),
            "summary": {
                "total_requests": stats["total_requests"],
                "successful_requests": stats["successful_requests"],
                "failed_requests": stats["failed_requests"],
                "cancelled_requests": stats["cancelled_requests"],
                "success_rate": stats["success_rate"],
                "retry_rate": stats["retry_rate"],
                "retried_requests": stats["retried_requests"],
                "total_retries": stats["total_retries"],
                "average_response_time": stats["average_response_time"],
                "p50_response_time": stats["latency"]["p50"],
                "p95_response_time": stats["latency"]["p95"],
                "p99_response_time": stats["latency"]["p99"],
                "average_queue_wait": stats["queue_wait"]["mean"],
            },
            "circuit_breaker": engine["circuit_breaker"],
            "queue": {
                "size": engine["queue_size"],
                "capacity": engine["queue_capacity"],
                "by_priority": engine["queue_by_priority"],
                "in_flight": engine["in_flight"],
                "max_concurrent_requests": engine["max_concurrent_requests"],
                "backing_off": engine["backing_off"],
            },
            "models": stats["models"],
            "errors": stats["errors_by_type"],
            "tokens": stats["tokens"],
            "cost": dict(
                stats["cost"],
                prices_as_of=settings.prices.as_of,
                max_cost=settings.max_cost,
                max_tokens_total=settings.max_tokens_total,
            ),
            "streams": stats["streams"],
            "batching": dict(
                stats["batches"],
                enabled=settings.batching_enabled,
                max_batch_size=settings.max_batch_size,
            ),
            "keys": stats["keys"],
            "key_pool": stats["key_pool"],
        }
        if include_details:
            report["details"] = {
                "stats": stats,
                "settings": settings.as_dict(),
                "base_url": self._engine.base_url,
                "supported_batch_models": list(self._engine.supported_batch_models),
            }
        return report

    def add_hooks(
        self,
        *,
        on_start: Callable[[Any], object] | None = None,
        on_success: Callable[[Any], object] | None = None,
        on_failure: Callable[[Any], object] | None = None,
    ) -> Callable[[], None]:
        """Call ``on_start(RequestQueued)`` as each request is admitted and
        ``on_success(RequestDone)`` / ``on_failure(RequestDone)`` as its caller
        gets the outcome; plain or async functions (see
        :mod:`ipfs_accelerate_py.observability.hooks`).  A hook that raises is
        logged and never breaks a request.  Returns the function that removes them."""
        from ..observability.hooks import Hooks

        engine = self._engine
        hooks = Hooks(
            engine.events,
            lambda: engine.loop,
            on_start=on_start,
            on_success=on_success,
            on_failure=on_failure,
        )
        return hooks.remove

    def reset_stats(self) -> None:
        self._engine.stats.reset()

    # -------------------------------------------------------- inspection

    @property
    def request_queue(self) -> list[dict[str, Any]]:
        """What waits in the queue now, in dispatch order (a snapshot)."""
        return [
            {
                "request_id": r.request_id,
                "endpoint": r.endpoint,
                "priority": r.priority,
                "model": r.model,
            }
            for r in self._engine.queue.snapshot()
        ]

    @property
    def queue_lock(self) -> Any:
        """The lock that guards the queue (reentrant); hold it only briefly."""
        return self._engine.queue.lock

    @property
    def current_requests(self) -> int:
        return self._engine.in_flight


_STATS_FIELDS = (
    "success",
    "response_time",
    "queue_wait",
    "model",
    "error_type",
    "endpoint",
    "tokens_in",
    "tokens_out",
    "attempts",
)


def stats_record(stats_update: Any, fields: Mapping[str, Any]) -> RequestRecord:
    """``update_stats``'s arguments as a record, each field checked and named when refused."""
    if stats_update is not None and not isinstance(stats_update, Mapping):
        raise InvalidInputError(
            f"update_stats takes a dict of fields or keyword arguments, not {type(stats_update).__name__} "
            f"{shown(stats_update)}; e.g. update_stats(success=True, response_time=0.25)"
        )
    update = dict(stats_update or {}, **fields)
    unknown = set(update) - set(_STATS_FIELDS)
    if unknown or "success" not in update:
        raise InvalidInputError(
            f"update_stats takes {', '.join(_STATS_FIELDS)} (success required); got {sorted(map(str, update))}"
        )
    success = update["success"]
    if not isinstance(success, bool) and success not in (0, 1):
        raise InvalidInputError(
            f"update_stats field 'success' must be True or False, not {shown(success)}"
        )

    def number(name: str, default: float) -> float:
        value = update.get(name, default)
        try:
            return require_number(name, value)
        except SettingError as exc:
            raise _refused(name, value, exc) from None

    def count(name: str, default: int, minimum: int) -> int:
        value = update.get(name, default)
        try:
            return require_int(name, value, minimum)
        except SettingError as exc:
            raise _refused(name, value, exc) from None

    def text(name: str) -> str | None:
        value = update.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidInputError(
                f"update_stats field {name!r} must be text or None, not {shown(value)}"
            )
        return value

    return RequestRecord(
        success=bool(success),
        latency=number("response_time", 0.0),
        queue_wait=number("queue_wait", 0.0),
        attempts=count("attempts", 1, 1),
        model=text("model"),
        error_kind=text("error_type"),
        tokens_in=count("tokens_in", 0, 0),
        tokens_out=count("tokens_out", 0, 0),
        endpoint=text("endpoint"),
    )


def _refused(name: str, value: Any, exc: SettingError) -> InvalidInputError:
    return InvalidInputError(
        f"update_stats field {name!r} must be {exc.expected}, not {shown(value)}"
    )
