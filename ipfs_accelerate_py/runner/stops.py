"""Why a run ends before its file is done, and the exit status that says so.

One table for the whole command (the README lists it):

====  =======================================================================
code  meaning
====  =======================================================================
0     every line of the file has its result, all succeeded
1     the run went through the file; some lines failed (or were skipped as
      malformed with ``--skip-bad-lines``)
2     nothing was sent: bad usage, a bad job or config file, or the
      pre-flight found that the target cannot work (refused, DNS, TLS,
      401/403, 404)
3     stopped: the circuit stayed open longer than ``--max-outage``
4     stopped: no usable key left (every key answered 401/403)
5     stopped: ``--max-same-failures`` lines in a row failed the same way
6     stopped: the results file could not be written (a full disk, a closed
      pipe); what is on disk is kept, the rest runs on resume
70    an internal error (a bug: please report it; ``IPFS_ACCELERATE_TRACEBACK=1``
      shows the traceback)
130   stopped by Ctrl-C (SIGINT); 143 by SIGTERM
====  =======================================================================

A stop of 3, 4, 5, 6, 130 or 143 leaves the file resumable: what finished is
kept, the rest runs when the same command is given again.

The rules are plain values and functions of what the run saw (no clock, no
I/O), so they are tested exactly; the runner applies them.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from ..resilience.errors import AuthenticationError, NetworkError, NotFoundError

__all__ = [
    "EXIT_FAILURES",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_NO_KEY",
    "EXIT_OK",
    "EXIT_OUTAGE",
    "EXIT_SAME_FAILURES",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "EXIT_WRITE_FAILED",
    "DEFAULT_MAX_OUTAGE",
    "DEFAULT_MAX_SAME_FAILURES",
    "DEFAULT_STOP_GRACE",
    "FailureStreak",
    "PreflightFailed",
    "Stop",
    "describe_error",
    "no_key_stop",
    "outage_stop",
    "preflight_failure",
    "signal_stop",
    "write_stop",
]

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_OUTAGE = 3
EXIT_NO_KEY = 4
EXIT_SAME_FAILURES = 5
EXIT_WRITE_FAILED = 6
EXIT_INTERNAL = 70  # EX_SOFTWARE of sysexits.h
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143

DEFAULT_MAX_OUTAGE = 300.0  # seconds the circuit may stay open before the run stops
DEFAULT_MAX_SAME_FAILURES = 20  # lines in a row failing the same way before the run stops
DEFAULT_STOP_GRACE = 5.0  # seconds in-flight lines get to finish after the first Ctrl-C / SIGTERM
_MESSAGE_CHARS = 160  # of an error's message in a failure's signature


@dataclass(frozen=True)
class Stop:
    """Why the run stopped early: the exit status, one line for people, and
    whether the lines in flight may finish (a signal) or are abandoned at
    once (nothing more can work: they are recorded ``interrupted``)."""

    code: int
    reason: str
    graceful: bool = False


class PreflightFailed(Exception):
    """The first request showed the target cannot work; nothing was written."""


def signal_stop(signum: int) -> Stop:
    name = signal.Signals(signum).name
    word = "Ctrl-C" if signum == signal.SIGINT else name
    return Stop(128 + signum, f"interrupted by {word}", graceful=True)


def outage_stop(seconds: float, last_error: BaseException | None) -> Stop:
    last = f", last error: {describe_error(last_error)}" if last_error is not None else ""
    return Stop(
        EXIT_OUTAGE, f"outage of {seconds:.0f} s (the circuit stayed open past --max-outage){last}"
    )


def no_key_stop(error: BaseException, disabled: dict[str, str]) -> Stop:
    if disabled:
        keys = "; ".join(f"{name}: {why}" for name, why in disabled.items())
        return Stop(
            EXIT_NO_KEY, f"no usable key left ({keys}); fix or replace the keys and run again"
        )
    return Stop(EXIT_NO_KEY, f"the key was refused: {describe_error(error)}; fix it and run again")


def write_stop(error: BaseException, written: int) -> Stop:
    return Stop(
        EXIT_WRITE_FAILED,
        f"{error}; {written} lines of this run are on disk, the rest runs again on resume "
        "(free some space, or give another --out)",
    )


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


_Signature = tuple[str, object, str]


def _signature(error: BaseException) -> _Signature:
    """What makes two failures "the same": class, status, and the server's message."""
    message = getattr(error, "message", None)
    text = message if isinstance(message, str) else str(error)
    return (type(error).__name__, getattr(error, "status", None), text[:_MESSAGE_CHARS])


class FailureStreak:
    """Counts lines in a row that failed the same way; a success, or a
    different failure, starts the count again.  ``limit`` 0: never stops."""

    __slots__ = ("limit", "count", "_last", "_last_error")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._last: _Signature | None = None
        self._last_error: BaseException | None = None

    def success(self) -> None:
        self.count, self._last = 0, None

    def failure(self, error: BaseException) -> Stop | None:
        """Count ``error``; the stop when the limit is reached."""
        signature = _signature(error)
        self.count = self.count + 1 if signature == self._last else 1
        self._last, self._last_error = signature, error
        if self.limit and self.count >= self.limit:
            return Stop(
                EXIT_SAME_FAILURES,
                f"the last {self.count} lines all failed the same way ({describe_error(error)}); "
                "fix the cause and run again with --retry-failed (or raise --max-same-failures)",
            )
        return None


def preflight_failure(
    error: BaseException, usable_keys: int, refused_keys: tuple[str, ...] = ()
) -> str | None:
    """When the first request's error shows the target cannot work: the one
    line that says so and what to change; None when the run should go on
    (a rate limit, a 5xx, a timeout, a bad line: the run's own rules
    handle those).  ``refused_keys``: the labels of the keys disabled so far."""
    if isinstance(error, NetworkError):
        return (
            f"cannot reach the target: {error}; check --base-url (is the server running, are the address and the "
            "scheme, http:// or https://, right?)"
        )
    if isinstance(error, AuthenticationError) and (
        usable_keys == 0 or getattr(error, "attempts", None) == 0
    ):
        which = f"every key ({', '.join(refused_keys)})" if len(refused_keys) > 1 else "the key"
        return (
            f"the target refused {which}: {error}; check --key, the config's keys or the provider's "
            "key variable (e.g. OPENAI_API_KEY)"
        )
    if isinstance(error, NotFoundError):
        return f"not found: {error}; check the model (--model or the lines' 'model') and --base-url"
    return None
