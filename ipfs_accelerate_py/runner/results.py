"""The results file: one JSON line per finished job, appended as each one
finishes and flushed at once, so a crash loses nothing that completed.

A line::

    {"id": "q1", "line": 1, "status": "ok", "result": {...}, "attempts": 1,
     "latency_s": 0.21, "key": "key1", "finished_at": 1764390000.1}
    {"id": "q2", "line": 2, "status": "error", "error": {"type": "RateLimitError",
     "kind": "rate_limit", "message": "...", "status": 429}, "attempts": 4, ...}
    {"id": "q3", "line": 3, "status": "interrupted", ...}

Resuming reads the file back.  An id with an ``ok`` line is done; one with
only ``error`` lines is done unless failures are retried; an ``interrupted``
one was never finished.  A line cut short by a crash (no
newline at its end) is dropped before anything is appended.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from .idset import IdSet

__all__ = ["Outcomes", "ResultLog", "STATUS_ERROR", "STATUS_INTERRUPTED", "STATUS_OK"]

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_INTERRUPTED = "interrupted"
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


class Outcomes:
    """What earlier runs of the same output file finished: the ids that
    succeeded, and those that failed (an id may be in both: it failed, then
    succeeded on a retry; success wins).  Kept compact (:class:`IdSet`)."""

    __slots__ = ("ok", "failed")

    def __init__(self) -> None:
        self.ok = IdSet()
        self.failed = IdSet()

    @classmethod
    def read(cls, path: str) -> "Outcomes":
        outcomes = cls()
        if not os.path.exists(path):
            return outcomes
        with open(path, "rb") as source:
            for raw in source:
                if not raw.endswith(b"\n"):
                    break  # cut short by a crash: never finished
                try:
                    record = json.loads(raw)
                    job_id, status = str(record["id"]), record["status"]
                except (ValueError, KeyError, TypeError):
                    continue  # not one of ours: ignored, kept
                if status == STATUS_OK:
                    outcomes.ok.add(job_id)
                elif status == STATUS_ERROR:
                    outcomes.failed.add(job_id)
        return outcomes

    def done(self, job_id: str, retry_failed: bool) -> bool:
        return job_id in self.ok or (not retry_failed and job_id in self.failed)

    def still_failed(self, job_id: str) -> bool:
        return job_id in self.failed and job_id not in self.ok

    def __len__(self) -> int:
        return len(self.ok) + len(self.failed)


class ResultLog:
    """Appends result lines, each written whole and flushed before the next."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: Optional[int] = None
        self.written = 0

    def open(self) -> "ResultLog":
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        _drop_partial_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self

    def write(self, record: dict[str, Any]) -> None:
        """One line, with a single write where the OS allows (O_APPEND)."""
        if self._fd is None:
            raise RuntimeError("ResultLog.write before open()")
        data = (_ENCODER.encode(record) + "\n").encode()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.written += 1

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.fsync(fd)
            os.close(fd)

    def __enter__(self) -> "ResultLog":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _drop_partial_tail(path: str) -> None:
    """Cut a last line that has no newline (a write a crash interrupted)."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as target:
        size = target.seek(0, os.SEEK_END)
        if size == 0:
            return
        target.seek(size - 1)
        if target.read(1) == b"\n":
            return
        block = 1 << 16
        end = size
        while end > 0:
            start = max(0, end - block)
            target.seek(start)
            cut = target.read(end - start).rfind(b"\n")
            if cut >= 0:
                target.truncate(start + cut + 1)
                return
            end = start
        target.truncate(0)
