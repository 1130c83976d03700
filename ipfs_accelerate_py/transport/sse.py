"""Stream decoding: server-sent events and newline-delimited JSON.

SSE follows the WHATWG rules, the subset model APIs use: ``event:``,
``data:`` (joined with newlines), comments and ``id:``/``retry:`` ignored; a
blank line ends an event.  An event whose data grows past
``max_event_bytes`` ends the stream with :class:`ResponseTooLargeError`
(many short ``data:`` lines could otherwise grow one event for ever)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NamedTuple

from ..resilience.errors import too_large

__all__ = ["SseEvent", "iter_ndjson", "iter_sse"]


class SseEvent(NamedTuple):
    event: str | None
    data: str


async def iter_sse(
    lines: AsyncIterator[bytes], max_event_bytes: int | None = None
) -> AsyncIterator[SseEvent]:
    event: str | None = None
    data: list[str] = []
    size = 0
    async for raw in lines:
        line = raw.decode("utf-8", "replace")
        if not line:
            if data or event is not None:
                yield SseEvent(event, "\n".join(data))
            event, data, size = None, [], 0
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            size += len(raw)
            if max_event_bytes is not None and size > max_event_bytes:
                raise too_large("a stream event", max_event_bytes, size, "max_stream_line_bytes")
            data.append(value)
        elif name == "event":
            event = value
    if data or event is not None:
        yield SseEvent(event, "\n".join(data))


async def iter_ndjson(lines: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Newline-delimited JSON (Ollama): each non-blank line is one event."""
    async for raw in lines:
        if raw.strip():
            yield raw
