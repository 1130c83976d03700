"""A client made before ``os.fork()`` works in the child.

The child inherits copies of every engine but only the thread that forked:
no engine loop runs there, the aiohttp session belongs to the parent's loop
(and its keep-alive sockets to the parent), and a lock another thread held
at the fork stays held for ever.  So, in the child, right after the fork
(``os.register_at_fork(after_in_child=...)``), each live engine:

* re-initialises the locks of its policies (queue, breakers, key pool,
  stats), which may have been copied while held;
* forgets the parent's work: queued, backing-off and in-flight requests,
  open batches, timers and tasks (those requests are the parent's: the
  parent answers them; their futures never complete in the child);
* drops its loop binding: the next request starts the child's own engine
  loop (:func:`~.loop.engine_loop`), and the transport opens a new session
  on it (a transport's ``after_fork()``, if it has one).

What it keeps: settings, keys and their state (cooldowns, breakers),
the circuit's state and the statistics so far.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Protocol

__all__ = ["register"]


class Engine(Protocol):
    """What a fork restarts: an engine (it imports this module, not the other way)."""

    closed: bool

    def restart_after_fork(self) -> None: ...


_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))
_POLICY_MODULES = "ipfs_accelerate_py.resilience."
_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def register(engine: Engine) -> None:
    """Have ``engine`` restarted in the child of every later fork."""
    _engines.add(engine)


def _after_fork_in_child() -> None:
    for engine in list(_engines):
        if not engine.closed:
            engine.restart_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def reinit_locks(root: Any) -> None:
    """Re-initialise (unlocked) every lock held by ``root``, a policy object,
    and by the policy objects, dicts, lists and tuples it holds."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, _LOCK_TYPES):
            obj._at_fork_reinit()  # type: ignore[union-attr]  # private, on both lock types since 3.9
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif type(obj).__module__.startswith(_POLICY_MODULES):
            stack.extend(_attributes(obj))


def _attributes(obj: Any) -> list[Any]:
    values = list(getattr(obj, "__dict__", {}).values())
    for cls in type(obj).__mro__:
        slots = getattr(cls, "__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if hasattr(obj, name):
                values.append(getattr(obj, name))
    return values
