"""One engine event loop per process, in a background thread.

Every backend's queue, dispatcher, batcher and transport live on it.  Sync
callers hand work to it and block on a future; async callers on other loops
hand work to it and await.  It starts on first use and starts again in a
child after ``fork`` (the parent's thread does not exist there).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
import threading
from collections.abc import Coroutine
from typing import Any

__all__ = ["EngineLoop", "engine_loop", "in_engine_thread", "start_task"]

_USE_UVLOOP_ENV = "IPFS_ACCELERATE_UVLOOP"


def _new_loop() -> asyncio.AbstractEventLoop:
    if os.environ.get(_USE_UVLOOP_ENV, "1") != "0":
        try:
            import uvloop

            return uvloop.new_event_loop()
        except ImportError:
            pass
    return asyncio.new_event_loop()


class EngineLoop:
    """A running event loop in a daemon thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = _new_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ipfs-accelerate-engine", daemon=True)
        self.thread.start()
        # compared on every call from a caller's thread; None once the thread ends
        # (the system may then give its ident to another thread)
        self.ident: int | None = self.thread.ident
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.ident = None

    @property
    def alive(self) -> bool:
        return self.pid == os.getpid() and self.thread.is_alive() and not self.loop.is_closed()


_lock = threading.Lock()
_current: EngineLoop | None = None


def _after_fork_in_child() -> None:
    global _lock, _current
    _lock = threading.Lock()
    _current = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def engine_loop() -> EngineLoop:
    """The process's engine loop, started (or restarted after fork) on demand."""
    global _current
    current = _current
    if current is not None and current.alive:
        return current
    with _lock:
        if _current is None or not _current.alive:
            _current = EngineLoop()
        return _current


def in_engine_thread() -> bool:
    current = _current
    return current is not None and current.ident == threading.get_ident()


if sys.version_info >= (3, 11):

    def start_task(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any],
        context: contextvars.Context,
    ) -> asyncio.Task[Any]:
        """A task of ``coro`` on ``loop`` that runs in ``context`` (a caller's
        context variables, seen by loggers, transports and hooks during it)."""
        return loop.create_task(coro, context=context)

else:  # 3.10: no context= yet; a task copies the context it is created in

    def start_task(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any],
        context: contextvars.Context,
    ) -> asyncio.Task[Any]:
        """A task of ``coro`` on ``loop`` that runs in (a copy of) ``context``."""
        return context.run(loop.create_task, coro)
