"""The process's embedded simulator: started on first use, stopped at exit.

A backend whose base URL is ``"simulator"`` talks to it, so examples and the
feature checks run with no network and no key.
"""

from __future__ import annotations

import atexit
import threading

from .server import Simulator

__all__ = ["embedded_simulator"]

_lock = threading.Lock()
_instance: Simulator | None = None


def embedded_simulator() -> Simulator:
    global _instance
    with _lock:
        if _instance is None or not _instance.running:
            _instance = Simulator().start()
            atexit.register(_instance.stop)
        return _instance
