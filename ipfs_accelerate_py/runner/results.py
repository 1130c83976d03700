"""The results file: one JSON line per finished job, appended as each one
finishes and flushed at once, so a crash loses nothing that completed.

A line::

    {"id": "q1", "line": 1, "status": "ok", "result": {...}, "attempts": 1,
     "latency_s": 0.21, "key": "key1", "finished_at": 1764390000.1}
    {"id": "q2", "line": 2, "status": "error", "error": {"type": "RateLimitError",
     "kind": "rate_limit", "message": "...", "status": 429}, "attempts": 4, ...}
    {"id": "q3", "line": 3, "status": "interrupted", ...}

With ``output_format="openai-batch"`` each line is instead the OpenAI Batch
API's output line (see :mod:`.openai_batch`), and an interrupted job has
none.

Resuming reads the file back (either format, even both in one file).  An id with an ``ok`` line is done; one with
only ``error`` lines is done unless failures are retried; an ``interrupted``
one was never finished.  A line cut short by a crash (no
newline at its end) is dropped before anything is appended.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from . import openai_batch
from .idset import IdSet

__all__ = ["OUTPUT_FORMATS", "Outcomes", "ResultLog", "STATUS_ERROR", "STATUS_INTERRUPTED", "STATUS_OK"]

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_INTERRUPTED = "interrupted"
OUTPUT_FORMATS = ("jobs", "openai-batch")
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
                    if openai_batch.is_batch_output(record):
                        job_id, ok = openai_batch.read_outcome(record)
                        status = STATUS_OK if ok else STATUS_ERROR
                    else:
                        job_id, status = str(record["id"]), record["status"]
                except (ValueError, KeyError, TypeError, AttributeError):
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
    """Appends result lines, each written whole and flushed before the next,
    in ``output_format`` (``jobs`` or ``openai-batch``); ``secrets`` are
    masked in what a Batch API line takes from an error."""

    def __init__(self, path: str, output_format: str = "jobs", secrets: tuple = ()) -> None:
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output format {output_format!r}: use {', '.join(OUTPUT_FORMATS)}")
        self.path = path
        self.output_format = output_format
        self._secrets = tuple(secrets)
        self._fd: Optional[int] = None
        self.written = 0

    def open(self) -> "ResultLog":
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        _drop_partial_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self

    def write(self, record: dict[str, Any], error: Any = None) -> None:
        """One line, with a single write where the OS allows (O_APPEND).
        ``error``: the exception a failed job ended with (a Batch API line
        takes the server's status, request id and body from it)."""
        if self._fd is None:
            raise RuntimeError("ResultLog.write before open()")
        if self.output_format == "openai-batch":
            if record["status"] == STATUS_INTERRUPTED:
                return  # not done: no line, and a resume sends it
            exc = error if isinstance(error, BaseException) else None
            record = openai_batch.output_line(record, exc, self._secrets)
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
