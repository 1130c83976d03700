"""User callbacks on a request's start, success and failure.

``client.add_hooks(on_start=..., on_success=..., on_failure=...)`` calls
each with the engine's typed event: ``on_start(RequestQueued)`` when a request
is admitted, ``on_success(RequestDone)`` / ``on_failure(RequestDone)`` when
its caller has the outcome (``event.ok``; tokens, cost, latency, the answer's
model and id; on a failure ``event.error`` is the exception the caller got,
keys redacted).  A hook may be a plain function or an ``async def``:

* a plain function runs on the thread that tells the event (the caller's for
  ``on_start``, the engine's for the others): keep it quick, or make it async;
* an async one is scheduled on the engine's loop and never waited for by the
  request; at most :data:`MAX_PENDING` of a client's async hook calls run at
  once, and what comes past that is dropped with a warning (logged once),
  so a slow store cannot hold an unbounded backlog.

A hook that raises (or whose coroutine raises) is logged, the first time with
its traceback, and never breaks a request; it stays registered.
``add_hooks`` returns the function that removes them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..engine.events import EventBus, RequestDone, RequestQueued

__all__ = ["MAX_PENDING", "Hook", "Hooks"]

log = logging.getLogger("ipfs_accelerate_py.hooks")

MAX_PENDING = 1000
"""A client's async hook calls that may run at once; more are dropped (logged)."""

Hook = Callable[[Any], object]


class Hooks:
    """One ``add_hooks`` call: its callbacks, subscribed to one client's events."""

    def __init__(
        self,
        events: EventBus,
        loop: Callable[[], asyncio.AbstractEventLoop],
        *,
        on_start: Hook | None = None,
        on_success: Hook | None = None,
        on_failure: Hook | None = None,
    ) -> None:
        for name, hook in (
            ("on_start", on_start),
            ("on_success", on_success),
            ("on_failure", on_failure),
        ):
            if hook is not None and not callable(hook):
                raise TypeError(
                    f"{name} must be a function taking one event (or an async one), "
                    f"got {type(hook).__name__}"
                )
        if on_start is None and on_success is None and on_failure is None:
            raise TypeError("add_hooks needs at least one of on_start, on_success, on_failure")
        self._events = events
        self._loop = loop
        self._lock = threading.Lock()
        self._pending = 0  # (lock) async hook calls running
        self._dropped = 0  # (lock) async hook calls dropped past MAX_PENDING
        self._failed: set[int] = set()  # ids of hooks whose failure was logged
        self._start = self._runner(on_start)
        self._success = self._runner(on_success)
        self._failure = self._runner(on_failure)
        if self._start is not None:
            events.subscribe(self._start, RequestQueued)
        if self._success is not None or self._failure is not None:
            events.subscribe(self._done, RequestDone)

    @property
    def dropped(self) -> int:
        """Async hook calls dropped because :data:`MAX_PENDING` were running."""
        return self._dropped

    def remove(self) -> None:
        """Call these hooks no more (async calls already running finish)."""
        for callback in (self._start, self._done):
            if callback is not None:
                self._events.unsubscribe(callback)

    def _done(self, event: RequestDone) -> None:
        run = self._success if event.ok else self._failure
        if run is not None:
            run(event)

    def _runner(self, hook: Hook | None) -> Callable[[Any], None] | None:
        """``hook`` as an event subscriber: called at once, or (async) scheduled."""
        if hook is None:
            return None
        # an async def, or an object whose __call__ is one
        if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(type(hook).__call__):
            return lambda event: self._schedule(hook, event)
        return lambda event: self._call(hook, event)

    def _call(self, hook: Hook, event: Any) -> None:
        try:
            hook(event)
        except Exception:
            self._log_failure(hook, event)

    def _schedule(self, hook: Hook, event: Any) -> None:
        with self._lock:
            if self._pending >= MAX_PENDING:
                self._dropped += 1
                first = self._dropped == 1
            else:
                self._pending += 1
                first = None
        if first is not None:
            if first:
                log.warning(
                    "%d async hook calls are still running: %r is not called for %s %s "
                    "(and further drops are not logged; see Hooks.dropped)",
                    MAX_PENDING,
                    hook,
                    type(event).__name__,
                    event.request_id,
                )
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self._await(hook, event), self._loop())
        except BaseException:  # the loop is closed: the call cannot run
            self._finished()
            raise
        del future  # the coroutine reports its own end

    async def _await(self, hook: Hook, event: Any) -> None:
        try:
            await hook(event)  # type: ignore[misc]
        except Exception:
            self._log_failure(hook, event)
        finally:
            self._finished()

    def _finished(self) -> None:
        with self._lock:
            self._pending -= 1

    def _log_failure(self, hook: Hook, event: Any) -> None:
        key = id(hook)
        if key not in self._failed:
            self._failed.add(key)
            log.exception(
                "hook %r raised on %s of request %s; the request is unaffected, the hook "
                "stays registered and its further failures are logged without traceback",
                hook,
                type(event).__name__,
                event.request_id,
            )
        else:
            log.warning(
                "hook %r raised again on %s of request %s",
                hook,
                type(event).__name__,
                event.request_id,
            )
