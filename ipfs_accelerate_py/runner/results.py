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

import contextlib
import json
import os
from collections.abc import Mapping
from typing import Any

from . import openai_batch
from .idset import IdSet

__all__ = [
    "OUTPUT_FORMATS",
    "Outcomes",
    "ResultLog",
    "ResultWriteError",
    "STATUS_ERROR",
    "STATUS_INTERRUPTED",
    "STATUS_OK",
    "is_resumable",
]

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_INTERRUPTED = "interrupted"
OUTPUT_FORMATS = ("jobs", "openai-batch")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)
FSYNC_EVERY = 1000  # lines between two fsyncs of the results file (and one at the end)
MAX_LINE_BYTES = (
    256 << 20
)  # a results line longer than this is not read back whole (it is not one of ours)


class Outcomes:
    """What earlier runs of the same output file finished: the ids that
    succeeded, and those that failed (an id may be in both: it failed, then
    succeeded on a retry; success wins).  Kept compact (:class:`IdSet`)."""

    __slots__ = ("ok", "failed")

    def __init__(self) -> None:
        self.ok = IdSet()
        self.failed = IdSet()

    @classmethod
    def read(cls, path: str) -> Outcomes:
        """The outcomes a results file holds; none for a path that is not a
        regular file (a pipe or a device is written to, never read back)."""
        outcomes = cls()
        if not is_resumable(path):
            return outcomes
        with open(path, "rb") as source:
            for raw in _lines(source):
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


def is_resumable(path: str) -> bool:
    """Whether ``path`` is a regular file a later run can read back."""
    return os.path.isfile(path)


def _lines(source: Any, cap: int = MAX_LINE_BYTES) -> Any:
    """The lines of a binary file, a line longer than ``cap`` given as its
    first ``cap`` bytes and no newline (never whole in memory)."""
    while True:
        raw = source.readline(cap)
        if not raw:
            return
        if len(raw) == cap and not raw.endswith(b"\n"):
            while True:  # the rest of an overlong line, read and dropped a chunk at a time
                more = source.readline(cap)
                if not more or more.endswith(b"\n"):
                    break
            yield b"{}"  # not a result of ours: ignored, as any line that is not
            continue
        yield raw


class ResultWriteError(OSError):
    """The results file could not take a line (a full disk, a closed pipe):
    the line is not done, and the run must stop."""


class ResultLog:
    """Appends result lines, each written whole before the next, in
    ``output_format`` (``jobs`` or ``openai-batch``); ``secrets`` are masked
    in what a Batch API line takes from an error.

    A line counts (:attr:`written`) only once the OS took all of it; the
    file is fsynced every :data:`FSYNC_EVERY` lines and at close.  A write
    that fails raises :class:`ResultWriteError`, after cutting back whatever
    part of the line got out, and every later write raises it too: the file
    never holds a torn line followed by others."""

    def __init__(
        self,
        path: str,
        output_format: str = "jobs",
        secrets: tuple[str, ...] = (),
        fsync_every: int = FSYNC_EVERY,
    ) -> None:
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output format {output_format!r}: use {', '.join(OUTPUT_FORMATS)}")
        self.path = path
        self.output_format = output_format
        self._secrets = tuple(secrets)
        self._fd: int | None = None
        self._fsync_every = fsync_every
        self._regular = True
        self.written = 0
        self.failure: ResultWriteError | None = None

    def open(self) -> ResultLog:
        exists = os.path.exists(self.path)
        self._regular = not exists or os.path.isfile(self.path)
        if self._regular:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            _drop_partial_tail(self.path)
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if self._regular else 0)
        self._fd = os.open(self.path, flags, 0o644)
        return self

    def write(self, record: dict[str, Any], error: Any = None) -> None:
        """One line, with a single write where the OS allows (O_APPEND).
        ``error``: the exception a failed job ended with (a Batch API line
        takes the server's status, request id and body from it)."""
        if self._fd is None:
            raise RuntimeError("ResultLog.write before open()")
        line: Mapping[str, object] = record
        if self.output_format == "openai-batch":
            if record["status"] == STATUS_INTERRUPTED:
                return  # not done: no line, and a resume sends it
            exc = error if isinstance(error, BaseException) else None
            line = openai_batch.output_line(record, exc, self._secrets)
        if self.failure is not None:
            raise self.failure
        data = (_ENCODER.encode(line) + "\n").encode()
        view = memoryview(data)
        sent = 0
        try:
            while view:
                written = os.write(self._fd, view)
                sent += written
                view = view[written:]
            self.written += 1
            if self._fsync_every and self.written % self._fsync_every == 0:
                self._sync()
        except OSError as exc:
            raise self._fail(exc, sent) from exc

    def _fail(self, error: OSError, sent: int) -> ResultWriteError:
        """Cut back the part of a line that got out; the failure every later write raises."""
        if sent and self._regular and self._fd is not None:
            # the part of the line that got out goes again: the file ends on a whole
            # line (if this fails, the next open drops a torn tail anyway)
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, os.fstat(self._fd).st_size - sent)
        self.failure = ResultWriteError(
            error.errno, f"cannot write to {self.path}: {error.strerror or error}"
        )
        return self.failure

    def _sync(self) -> None:
        if self._regular and self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._regular:
                os.fsync(fd)
        except OSError as exc:
            if self.failure is None:
                self.failure = ResultWriteError(
                    exc.errno, f"cannot write to {self.path}: {exc.strerror or exc}"
                )
        finally:
            os.close(fd)

    def __enter__(self) -> ResultLog:
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
