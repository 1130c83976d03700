"""OpenAI Batch API files, read and written as they are.

An input line (the Batch API's "request input object")::

    {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}}

becomes a :class:`~.job.Job`: ``custom_id`` is its id, ``url`` its type
(see :data:`TYPE_BY_URL`), the body's ``model`` and ``messages`` / ``input``
/ ``prompt`` its model and content, every other body field a parameter.

An output line (the Batch API's "request output object")::

    {"id": "batch_req_...", "custom_id": "request-1",
     "response": {"status_code": 200, "request_id": null, "body": {...}}, "error": null}

As in the Batch API, a failure the server answered has ``response`` with
its status, request id and body, and ``error`` null; a failure with no answer
(connection refused, timeout, a cut stream) has ``response`` null and
``error`` = ``{"code": kind, "message": ...}``.  The
server's ``x-request-id`` is given when it is known (an error's), else
``null``.  A job that was interrupted has no line: it is not done, and a
resume sends it.

Pure mapping: no I/O; the line id's randomness comes from the caller.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from ..resilience.priority_queue import priority_level
from ..resilience.redact import redact
from .job import BadLine, Job, content_problem

__all__ = [
    "BATCH_ID_PREFIX",
    "TYPE_BY_URL",
    "batch_job",
    "is_batch_line",
    "is_batch_output",
    "new_line_id",
    "output_line",
    "read_outcome",
]

TYPE_BY_URL = {
    "/v1/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/v1/completions": "completion",
}
CONTENT_FIELD = {"chat": "messages", "embeddings": "input", "completion": "prompt"}
BATCH_ID_PREFIX = "batch_req_"
NORMAL = priority_level("normal")  # the format has no priority
OK_STATUS = 200  # a success's status: every 2xx is one, and the client keeps no other


def is_batch_line(data: Any) -> bool:
    """Whether a decoded line is a Batch API request (it has ``custom_id`` and ``body``)."""
    return isinstance(data, dict) and "custom_id" in data and "body" in data


def batch_job(data: Mapping[str, Any], line: int) -> Job | BadLine:
    """The job of a Batch API request line, or why it is not one."""
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return BadLine(line, f"'custom_id' must be a non-empty string, not {custom_id!r}")
    method = data.get("method")
    if method != "POST":
        return BadLine(
            line, f"'method' must be POST (the only one the Batch API has), not {method!r}"
        )
    url = data.get("url")
    kind = TYPE_BY_URL.get(url) if isinstance(url, str) else None
    if kind is None:
        return BadLine(line, f"unknown url {url!r}: use {', '.join(TYPE_BY_URL)}")
    body = data.get("body")
    if not isinstance(body, dict):
        return BadLine(line, f"'body' must be a JSON object, not {type(body).__name__}")
    content = body.get(CONTENT_FIELD[kind])
    problem = content_problem(kind, content)
    if problem:
        return BadLine(line, "body: " + problem)
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        return BadLine(line, f"body: 'model' must be a non-empty string, not {model!r}")
    params = {k: v for k, v in body.items() if k not in ("model", CONTENT_FIELD[kind])}
    return Job(line, custom_id, kind, model, NORMAL, content, params)


class BatchResponse(TypedDict):
    """An output line's ``response``: the server's answer."""

    status_code: int
    request_id: str | None
    body: Any  # the answer's JSON (an error body for a failure)


class BatchError(TypedDict):
    """An output line's ``error``: a failure with no answer."""

    code: str
    message: str


class BatchOutputLine(TypedDict):
    """The Batch API's "request output object"."""

    id: str
    custom_id: str
    response: BatchResponse | None
    error: BatchError | None


def new_line_id() -> str:
    """An output line's ``id``, shaped as the Batch API's."""
    return BATCH_ID_PREFIX + uuid.uuid4().hex[:24]


def output_line(
    record: Mapping[str, Any],
    error: BaseException | None = None,
    secrets: tuple[str, ...] = (),
    line_id: Callable[[], str] = new_line_id,
) -> BatchOutputLine:
    """The Batch API output line of a finished job's record (see :mod:`.results`)
    with, for a failure, the exception it ended with (for the server's status,
    request id and body).  Text from the server is redacted of ``secrets``."""
    out: BatchOutputLine = {
        "id": line_id(),
        "custom_id": record["id"],
        "response": None,
        "error": None,
    }
    if record["status"] == "ok":
        out["response"] = {
            "status_code": OK_STATUS,
            "request_id": None,
            "body": record.get("result"),
        }
        return out
    kept = record.get("error") or {}
    message = redact(str(getattr(error, "message", None) or kept.get("message") or ""), secrets)
    code: str = (
        kept.get("kind")
        or kept.get("type")
        or (type(error).__name__ if error is not None else "error")
    )
    status = getattr(error, "status", None) or kept.get("status")
    if isinstance(
        status, int
    ):  # the server answered: its answer, as the Batch API gives an HTTP failure
        out["response"] = {
            "status_code": status,
            "request_id": redact(getattr(error, "request_id", None), secrets),
            "body": _error_body(getattr(error, "body", None), message, code, secrets),
        }
    else:  # no answer (refused, timed out, cut): the Batch API's "non-HTTP error"
        out["error"] = {"code": code, "message": message}
    return out


def _error_body(body: Any, message: str, code: str, secrets: tuple[str, ...]) -> Any:
    """The server's error body as JSON; when it sent none that reads as an
    object, one of OpenAI's shape carrying the message."""
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str):
        with contextlib.suppress(ValueError):
            body = json.loads(body)
    if isinstance(body, dict):
        return redact(body, secrets)
    return {"error": {"message": message, "type": code, "param": None, "code": None}}


def is_batch_output(record: Any) -> bool:
    """Whether a decoded results line is a Batch API output line."""
    return (
        isinstance(record, dict)
        and "custom_id" in record
        and ("response" in record or "error" in record)
    )


def read_outcome(record: Mapping[str, Any]) -> tuple[str, bool]:
    """``(custom_id, succeeded)`` of a Batch API output line: it succeeded
    when its status is 2xx and it has no error.  Raises KeyError / TypeError
    on a line that is not one."""
    custom_id = record["custom_id"]
    if not isinstance(custom_id, (str, int)) or isinstance(custom_id, bool):
        raise TypeError(f"custom_id {custom_id!r}")
    response = record.get("response")
    status = response.get("status_code") if isinstance(response, dict) else None
    ok = isinstance(status, int) and 200 <= status < 300 and record.get("error") is None
    return str(custom_id), ok
