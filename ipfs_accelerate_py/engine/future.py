"""The future a caller holds: the seed's dict, plus a way to wait.

The seed polls ``future["completed"]``; that works (the result and error are
written before ``completed`` turns True).  Nobody has to poll, though:
``wait(timeout)``, ``result(timeout)`` block on an event, and ``await
future`` works from any event loop.  It completes exactly once.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Generator
from typing import Any

__all__ = ["RequestFuture"]


class RequestFuture(dict[str, Any]):
    """``{"completed": bool, "result": ..., "error": ..., "request_id": ...}``."""

    __slots__ = (
        "_done",
        "_event",
        "_callbacks",
        "_waiters",
        "_canceller",
        "_lock",
        "attempts",
        "key_name",
    )

    def __init__(self, request_id: str | None = None) -> None:
        super().__init__(completed=False, result=None, error=None, request_id=request_id)
        self.attempts = 0  # HTTP attempts the request took, once completed
        self.key_name: str | None = (
            None  # the key of its last attempt (a name or fingerprint, never the key)
        )
        self._done = False
        self._event: _Gate | None = None  # made for the first blocking wait only
        self._callbacks: list[Callable[[RequestFuture], None]] = []
        # tasks awaiting it, each with its loop's inbox (made for the first await only)
        self._waiters: list[tuple[_LoopInbox, asyncio.Future[None]]] | None = None
        self._canceller: Callable[[], None] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ reading

    def done(self) -> bool:
        return self._done

    def wait(self, timeout: float | None = None) -> bool:
        """Block until completed (True) or ``timeout`` seconds pass (False)."""
        if self._done:
            return True
        with self._lock:
            if self.done():  # completed meanwhile, by the engine's thread
                return True
            if self._event is None:
                self._event = _Gate()
            event = self._event
        return event.wait(timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The result; raises the request's typed error; ``TimeoutError`` if
        not completed within ``timeout`` (the request itself goes on)."""
        if not self.wait(timeout):
            raise TimeoutError(f"request {self.get('request_id')} not completed within {timeout}s")
        error = self["error"]
        if error is not None:
            raise error
        return self["result"]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self.wait(timeout):
            raise TimeoutError(f"request {self.get('request_id')} not completed within {timeout}s")
        error: BaseException | None = self["error"]
        return error

    def __await__(self) -> Generator[Any, None, Any]:
        """``await future``: its result, or its typed error raised; cancelling
        the awaiting task cancels the request."""
        if not self._done:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            # its loop's inbox, found here in the awaiting thread rather than by the completer
            entry = (_inbox_of(loop), waiter)
            with self._lock:
                waiting = not self._done
                if waiting:
                    if self._waiters is None:
                        self._waiters = [entry]
                    else:
                        self._waiters.append(entry)
            if waiting:
                try:
                    yield from waiter
                except asyncio.CancelledError:
                    self.cancel()
                    raise
        error = self["error"]  # done: completed before, or woken by the completion
        if error is not None:
            raise error
        return self["result"]

    # -------------------------------------------------------- completing

    def add_done_callback(self, fn: Callable[[RequestFuture], None]) -> None:
        with self._lock:
            if not self._done:
                self._callbacks.append(fn)
                return
        fn(self)

    def cancel(self) -> bool:
        """Ask for the request to be cancelled; True if it was still running.

        A queued request leaves the queue at once; an attempt in flight is
        aborted.  The future completes with ``CancelledRequestError``.
        """
        if self._done:
            return False
        canceller = self._canceller
        if canceller is not None:
            canceller()
        return True

    def _complete(
        self,
        result: Any = None,
        error: BaseException | None = None,
        attempts: int = 0,
        key_name: str | None = None,
    ) -> bool:
        """Set the outcome (and the attempts it took, on which key) once; later
        calls change nothing and return False."""
        with self._lock:
            if self._done:
                return False
            self.attempts, self.key_name = attempts, key_name
            self["result"] = result
            self["error"] = error
            self["completed"] = True
            self._done = True
            event = self._event
            callbacks, self._callbacks = self._callbacks, []
            waiters, self._waiters = self._waiters, None
            self._canceller = None
        if event is not None:
            event.set()
        if waiters is not None:
            for inbox, waiter in waiters:
                inbox.put(waiter)
        for fn in callbacks:
            fn(self)
        return True

    def __repr__(self) -> str:
        state = "completed" if self._done else "pending"
        err = self["error"]
        outcome = f", error={type(err).__name__}" if err is not None else ""
        return f"<RequestFuture {self.get('request_id')} {state}{outcome}>"

    # dict equality/hash semantics stay dict's; a future is not a value
    __hash__ = object.__hash__  # type: ignore[assignment]


class _Gate:
    """A one-shot ``threading.Event`` on one bare lock: opened once, waited
    on by any number of threads.

    ``threading.Event`` goes through a ``Condition`` (Python code, and a new
    lock per wait); here the gate is a lock held from birth, released by
    :meth:`set`, and each waiter that gets it releases it again for the next.
    A lock may be released by another thread than the one that took it.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        """Open the gate (once: the future completes once)."""
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        """True once open; False if ``timeout`` seconds passed first (as ``Event.wait``)."""
        lock = self._lock
        if timeout is None:
            got = lock.acquire()
        elif timeout > 0:
            got = lock.acquire(True, timeout)
        else:
            got = lock.acquire(False)
        if got:
            lock.release()  # open for the next waiter too
        return got


class _LoopInbox:
    """Wakes the awaiting tasks of one event loop, from any thread.

    Completions that arrive while a wake-up is already on its way ride on
    it: under load one cross-thread wake (a write to the loop's self-pipe)
    serves many futures.  A loop that has closed is skipped: nobody there
    waits any more, and the thread completing the future must not fail.
    """

    __slots__ = ("loop", "_lock", "_waiters", "_scheduled", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._waiters: list[asyncio.Future[None]] = []
        self._scheduled = False

    def put(self, waiter: asyncio.Future[None]) -> None:
        with self._lock:
            self._waiters.append(waiter)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed
            with self._lock:
                self._waiters.clear()
                self._scheduled = False

    def _drain(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
            self._scheduled = False
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopInbox] = (
    weakref.WeakKeyDictionary()
)
_inboxes_lock = threading.Lock()
_last_inbox: _LoopInbox | None = None  # the inbox found last (it holds its loop while cached)


def _after_fork_in_child() -> None:
    """The child's own: the parent's loops do not run here, and a lock another
    thread held at the fork would stay held for ever (see :mod:`.forking`)."""
    global _inboxes_lock, _last_inbox
    _inboxes_lock = threading.Lock()
    _inboxes.clear()
    _last_inbox = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _inbox_of(loop: asyncio.AbstractEventLoop) -> _LoopInbox:
    global _last_inbox
    inbox = _last_inbox  # most callers await from one loop: no weak-dictionary lookup
    if inbox is not None and inbox.loop is loop:
        return inbox
    inbox = _inboxes.get(loop)
    if inbox is None:
        with _inboxes_lock:
            inbox = _inboxes.get(loop)
            if inbox is None:
                inbox = _inboxes[loop] = _LoopInbox(loop)
    _last_inbox = inbox
    return inbox
