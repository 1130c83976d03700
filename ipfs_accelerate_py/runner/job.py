"""One job of the file, and the rules its content follows in every input format.

Its own module so that both formats (:mod:`.jobs`, :mod:`.openai_batch`) build
on it and neither imports the other's reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["JOB_TYPES", "BadLine", "Job", "content_problem"]

JOB_TYPES = ("chat", "completion", "embeddings")


@dataclass(frozen=True)
class Job:
    """One request of the file."""

    line: int
    id: str
    type: str
    model: str | None
    priority: int
    content: Any  # messages, input or prompt: JSON, checked by content_problem
    params: dict[str, Any] = field(default_factory=dict)  # every other field: JSON values


@dataclass(frozen=True)
class BadLine:
    """A line that is not a job: its number and why."""

    line: int
    reason: str


def content_problem(kind: str, content: Any) -> str | None:
    """What is wrong with a job's messages, input or prompt; None when nothing."""
    if kind == "chat":
        if (
            not isinstance(content, list)
            or not content
            or not all(isinstance(m, dict) and "role" in m for m in content)
        ):
            return "'messages' must be a non-empty list of {'role': ..., 'content': ...}"
    elif kind == "embeddings":
        if isinstance(content, str):
            return None if content else "'input' is empty"
        if (
            not isinstance(content, list)
            or not content
            or not all(isinstance(t, str) for t in content)
        ):
            return "'input' must be a string or a non-empty list of strings"
    elif not isinstance(content, (str, list)) or not content:
        return "'prompt' must be a non-empty string"
    return None
