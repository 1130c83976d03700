"""The running scenario and its consumable state, shared by the server and callers.

Holds the current :class:`Scenario` (replaced whole, never mutated, so a
request reads one consistent snapshot), what setting it set in motion (the
``*_next`` countdowns, the pending scripts, the seeded generators, the
rate-limit windows) and the ``quiet`` flag: true when nothing but the normal
answer can happen, so the server skips every check.  Thread-safe: the server
thread and test threads call it concurrently; the lock is never held across
I/O or a sleep.
"""

from __future__ import annotations

import collections
import random
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from .ratelimit import FixedWindows, Verdict
from .scenario import FIELD_NAMES, Scenario, ScriptEntry, normalise_path, script_entries
from .wireformat import RateState

__all__ = ["Behaviour"]

FAULTS = ("error", "drop", "hang", "malformed")
_NEXT_FIELDS = {
    "error": "fail_next",
    "drop": "drop_next",
    "hang": "hang_next",
    "malformed": "malformed_next",
}
_RATE_FIELDS = {
    "error": "error_rate",
    "drop": "drop_rate",
    "hang": "hang_rate",
    "malformed": "malformed_rate",
}


class Pending(TypedDict):
    """What is still queued (``GET /_admin/config``'s ``pending``)."""

    fail_next: int
    drop_next: int
    hang_next: int
    malformed_next: int
    script: int
    path_scripts: dict[str, int]


class Behaviour:
    """Scenario plus consumable state; see the module docstring."""

    def __init__(self, scenario: Scenario) -> None:
        self._lock = threading.Lock()
        self._initial = scenario
        self._windows = FixedWindows()
        self._next = dict.fromkeys(FAULTS, 0)
        self._script: collections.deque[ScriptEntry] = collections.deque()
        self._path_scripts: dict[str, collections.deque[ScriptEntry]] = {}
        self._faults_rng = random.Random()
        self._jitter_rng = random.Random()
        self.scenario = scenario
        self.quiet = False
        with self._lock:
            self._install(scenario, FIELD_NAMES)

    # -- changing it ----------------------------------------------------------------

    def configure(self, values: Mapping[str, Any]) -> Scenario:
        """Merge validated ``values`` into the running scenario (ScenarioError if invalid)."""
        with self._lock:
            scenario = self.scenario.merged(values)
            self._install(scenario, tuple(values))
            return scenario

    def reset(self, scenario: bool = True) -> None:
        """Back to the starting scenario (its script, countdowns, seed, empty windows)."""
        if scenario:
            with self._lock:
                self._install(self._initial, FIELD_NAMES)

    def set_script(self, entries: Any, path: str | None = None, append: bool = False) -> int:
        """Replace (or extend) the pending script, global or for ``path``; return its length."""
        checked = script_entries(entries)
        with self._lock:
            if path is None:
                queue = self._script
            else:
                queue = self._path_scripts.setdefault(normalise_path(path), collections.deque())
            if not append:
                queue.clear()
            queue.extend(checked)
            self._refresh()
            return len(queue)

    def _install(self, scenario: Scenario, changed: Iterable[str]) -> None:
        changed = set(changed)
        self.scenario = scenario
        for kind, name in _NEXT_FIELDS.items():
            if name in changed:
                self._next[kind] = getattr(scenario, name)
        if "script" in changed:
            self._script = collections.deque(scenario.script)
        if "path_scripts" in changed:
            self._path_scripts = {
                p: collections.deque(es) for p, es in scenario.path_scripts.items()
            }
        if "seed" in changed:
            self._faults_rng.seed(scenario.seed)
            self._jitter_rng.seed(scenario.seed)
        if changed & {"rate_limits", "rate_window"}:
            self._windows.clear()
        self._refresh()

    def _refresh(self) -> None:
        self.quiet = (
            self.scenario.is_plain
            and not any(self._next.values())
            and not self._script
            and not any(self._path_scripts.values())
        )

    # -- asking it (per request) ----------------------------------------------------

    def take_script(self, path: str) -> ScriptEntry | None:
        """The next script entry for ``path`` (its own script first), consumed."""
        with self._lock:
            for queue in (self._path_scripts.get(path), self._script):
                if queue:
                    entry = queue.popleft()
                    self._refresh()
                    return entry
        return None

    def draw_fault(self) -> str | None:
        """The fault for this request, if any: ``error``, ``drop``, ``hang`` or ``malformed``."""
        scenario = self.scenario
        with self._lock:
            fired = [
                kind
                for kind in FAULTS
                if getattr(scenario, _RATE_FIELDS[kind]) > 0
                and self._faults_rng.random() < getattr(scenario, _RATE_FIELDS[kind])
            ]
            for kind in FAULTS:
                if self._next[kind] > 0:
                    self._next[kind] -= 1
                    self._refresh()
                    return kind
        return fired[0] if fired else None

    def delay(self) -> float:
        """Latency for this request: ``latency`` plus its jitter."""
        scenario = self.scenario
        if scenario.latency_jitter <= 0:
            return scenario.latency
        with self._lock:
            return scenario.latency + self._jitter_rng.random() * scenario.latency_jitter

    def admit(self, key: str | None, ident: str, cost: int, now: float) -> Verdict | None:
        """Rate-limit verdict for ``key`` (fingerprint ``ident``); None when it has no limits."""
        scenario = self.scenario
        rpm, tpm = scenario.rate_limits.for_key(key)
        if rpm is None and tpm is None:
            return None
        with self._lock:
            return self._windows.admit(ident, rpm, tpm, cost, now, scenario.rate_window)

    def rate_state(self, key: str | None, ident: str, now: float) -> RateState | None:
        """What ``key`` has left in its window, without consuming anything; None without limits."""
        scenario = self.scenario
        rpm, tpm = scenario.rate_limits.for_key(key)
        if rpm is None and tpm is None:
            return None
        with self._lock:
            return self._windows.state(ident, rpm, tpm, now, scenario.rate_window)

    def pending(self) -> Pending:
        """What is still queued: countdowns and script lengths."""
        with self._lock:
            return {
                "fail_next": self._next["error"],
                "drop_next": self._next["drop"],
                "hang_next": self._next["hang"],
                "malformed_next": self._next["malformed"],
                "script": len(self._script),
                "path_scripts": {p: len(q) for p, q in self._path_scripts.items() if q},
            }
