"""The job file: one request per line (JSONL), read as a stream.

A line is a JSON object::

    {"id": "q1", "type": "chat", "model": "gpt-4o-mini",
     "messages": [{"role": "user", "content": "Hello"}], "priority": "high", "temperature": 0}
    {"id": "e1", "type": "embeddings", "model": "text-embedding-3-small", "input": "some text"}
    {"id": "c1", "type": "completion", "prompt": "Once upon a time", "max_tokens": 20}

- ``type``: ``chat``, ``completion`` or ``embeddings``; without one it follows
  from the fields (``messages`` -> chat, ``input`` -> embeddings, ``prompt``
  -> completion).
- ``id``: any string or number, unique in the file; without one the line
  number stands in (``"line-17"``).  Results and resuming go by id.
- ``model``: without one, the runner's ``--model`` or the backend's default.
- ``priority``: ``high`` / ``normal`` / ``low`` (any case; or 0 / 1 / 2); default normal.
- Every other field is passed to the provider as a parameter.

A line of an OpenAI Batch API file (``custom_id``, ``method``, ``url``,
``body``) is a job too (see :mod:`.openai_batch`): ``input_format``
``auto`` tells the two apart line by line, ``jobs`` or ``openai-batch``
accepts only the one.

Lines are read one at a time (memory does not grow with the file); blank
lines are skipped; a line that is not a valid job becomes a
:class:`BadLine` with its number and the reason, and the rest goes on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from ..resilience.errors import InvalidInputError
from ..resilience.priority_queue import priority_level
from . import openai_batch
from .job import JOB_TYPES, BadLine, Job, content_problem

__all__ = [
    "BadLine",
    "INPUT_FORMATS",
    "Job",
    "JOB_TYPES",
    "content_problem",
    "count_lines",
    "parse_job",
    "read_jobs",
]

INPUT_FORMATS = ("auto", "jobs", "openai-batch")
_TYPE_BY_FIELD = (("messages", "chat"), ("input", "embeddings"), ("prompt", "completion"))
_OWN_FIELDS = frozenset({"id", "type", "model", "priority", "messages", "input", "prompt"})
_READ_CHUNK = 1 << 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_job(text: str | bytes, line: int, input_format: str = "auto") -> Job | BadLine:
    """The job on line ``line`` (1-based), or why it is not one.
    ``input_format``: ``auto``, ``jobs`` or ``openai-batch`` (see above)."""
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input format {input_format!r}: use {', '.join(INPUT_FORMATS)}")
    try:
        data = json.loads(text)
    except ValueError as exc:
        return BadLine(line, f"not JSON: {exc}")
    if not isinstance(data, dict):
        return BadLine(line, f"a job is a JSON object, not {type(data).__name__}")
    batch = openai_batch.is_batch_line(data)
    if batch and input_format == "jobs":
        return BadLine(
            line, "an OpenAI Batch API line ('custom_id', 'body'), but the input format is jobs"
        )
    if not batch and input_format == "openai-batch":
        return BadLine(
            line,
            "not an OpenAI Batch API line (no 'custom_id' and 'body'), and the input format is openai-batch",
        )
    job = openai_batch.batch_job(data, line) if batch else _our_job(data, line)
    if isinstance(job, Job) and _CONTROL.search(job.id):
        return BadLine(
            line,
            f"the id {job.id!r} holds a control character; ids are sent as a request header, use printable text",
        )
    return job


def _our_job(data: dict[str, Any], line: int) -> Job | BadLine:
    kind = data.get("type")
    if kind is None:
        kind = next((k for name, k in _TYPE_BY_FIELD if name in data), None)
        if kind is None:
            return BadLine(line, "no 'messages', 'input' or 'prompt' (and no 'type')")
    if kind not in JOB_TYPES:
        return BadLine(line, f"unknown type {kind!r}: use {', '.join(JOB_TYPES)}")
    content_field = {"chat": "messages", "embeddings": "input", "completion": "prompt"}[kind]
    content = data.get(content_field)
    problem = content_problem(kind, content)
    if problem:
        return BadLine(line, problem)
    job_id = data.get("id", f"line-{line}")
    if isinstance(job_id, bool) or not isinstance(job_id, (str, int)) or job_id == "":
        return BadLine(line, f"'id' must be a non-empty string or a number, not {job_id!r}")
    try:
        priority = priority_level(data.get("priority", "normal"))  # the client's own rule
    except InvalidInputError:
        return BadLine(line, f"unknown priority {data.get('priority')!r}: use high, normal or low")
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        return BadLine(line, f"'model' must be a non-empty string, not {model!r}")
    params = {k: v for k, v in data.items() if k not in _OWN_FIELDS}
    return Job(line, str(job_id), kind, model, priority, content, params)


def read_jobs(path: str, input_format: str = "auto") -> Iterator[Job | BadLine]:
    """Every job of the file in order (and a :class:`BadLine` for each line
    that is not one), one line in memory at a time."""
    with open(path, "rb") as source:
        for number, raw in enumerate(source, start=1):
            if raw.strip():
                yield parse_job(raw, number, input_format)


def count_lines(path: str) -> int:
    """The number of non-blank lines, read in chunks (for the progress total)."""
    count = 0
    tail = b""
    with open(path, "rb") as source:
        while True:
            chunk = source.read(_READ_CHUNK)
            if not chunk:
                break
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            count += sum(1 for line in lines if line.strip())
    return count + (1 if tail.strip() else 0)
