"""A stream of normalized chunks handed from the engine loop to the caller.

The engine puts chunks in; the caller reads them with ``for chunk in
stream`` or ``async for chunk in stream`` (from any event loop).  Each item
is a :class:`StreamChunk`: the text it adds, tool-call pieces, the finish
reason, usage where the provider reports it, and the provider's own chunk
(``raw``).  The stream ends with the provider's end marker, or with a typed
error that says how much had arrived; nothing is silently truncated.

Closing it early (``close()``, ``await aclose()``, ``with``/``async with``,
or ``break`` then garbage collection) aborts the attempt and frees its slot
and key.  A consumer slower than the server holds the feeder back once
:data:`HIGH_WATER` chunks wait (memory stays bounded); it reads on when the
consumer has caught up to :data:`LOW_WATER`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = [
    "END_OF_STREAM",
    "HIGH_WATER",
    "LOW_WATER",
    "ChunkStream",
    "StreamChunk",
    "StreamProgress",
]

END_OF_STREAM = object()
"""Put in a stream's channel after its last chunk."""
HIGH_WATER = 512
LOW_WATER = 128


class StreamChunk:
    """One chunk of a stream, in the same terms for every provider.

    ``text``: the text it adds ("" if none); ``tool_calls``: tool-call pieces
    (:class:`ToolCallDelta`: ``index``, ``id``, ``name``, ``arguments``
    fragment); ``finish_reason``: why generation stopped (``"stop"``,
    ``"length"``, ``"tool_calls"``, ``"content_filter"`` or the provider's
    own word), on the chunk that says so; ``usage``: ``{"input_tokens",
    "output_tokens"}`` when this chunk reports them; ``raw``: the provider's
    chunk as it was sent (decoded JSON).
    """

    __slots__ = ("text", "tool_calls", "finish_reason", "usage", "raw")

    def __init__(
        self,
        text: str,
        tool_calls: tuple[Any, ...],
        finish_reason: str | None,
        usage: dict[str, Any] | None,
        raw: Any,
    ) -> None:
        self.text = text
        self.tool_calls = tool_calls
        self.finish_reason = finish_reason
        self.usage = usage
        self.raw = raw

    def __repr__(self) -> str:
        parts = [f"text={self.text!r}"]
        if self.tool_calls:
            parts.append(f"tool_calls={list(self.tool_calls)!r}")
        if self.finish_reason:
            parts.append(f"finish_reason={self.finish_reason!r}")
        if self.usage:
            parts.append(f"usage={self.usage!r}")
        return f"StreamChunk({', '.join(parts)})"


class StreamProgress:
    """(engine loop) What a stream has delivered so far: it turns each
    provider chunk into a :class:`StreamChunk` and keeps the figures an
    error and the statistics report (chunks, text, usage, when it began)."""

    __slots__ = (
        "started", "count", "chars", "text_chunks", "usage", "finish_reason", "first", "_text"
    )  # fmt: skip

    def __init__(self, started: float) -> None:
        self.started = started  # when the first chunk arrived
        self.count = 0
        self.chars = 0
        self.text_chunks = 0
        self.usage = (0, 0)
        self.finish_reason: str | None = None  # the last one a chunk gave
        self.first: Any = None  # the first raw chunk (its model and id, for the RequestDone event)
        self._text: list[str] = []

    def chunk(self, provider: Any, raw: Any) -> StreamChunk:
        delta = provider.stream_delta(raw)
        usage = None
        if delta.usage is not None:  # figures may come in different chunks (Anthropic): keep each
            self.usage = (delta.usage[0] or self.usage[0], delta.usage[1] or self.usage[1])
            usage = {"input_tokens": self.usage[0], "output_tokens": self.usage[1]}
        if delta.text:
            self._text.append(delta.text)
            self.chars += len(delta.text)
            self.text_chunks += 1
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason
        if not self.count:
            self.first = raw
        self.count += 1
        return StreamChunk(delta.text, delta.tool_calls, delta.finish_reason, usage, raw)

    def text(self) -> str:
        return "".join(self._text)

    def output_tokens(self) -> int:
        """As the provider reported them; else one per chunk that carried text."""
        return self.usage[1] or self.text_chunks


class _Channel:
    """Chunks from the engine thread to one consumer, sync or async.

    A put wakes the consumer only when it is waiting; a consumer that is
    busy finds the chunks queued.  The engine side never blocks: when
    :data:`HIGH_WATER` chunks wait, :meth:`put` says so and the feeder
    awaits :meth:`room` (on the engine loop) before it reads on.
    """

    __slots__ = (
        "_lock",
        "_items",
        "_event",
        "_sync_waiting",
        "_async_waiter",
        "_room",
        "_room_loop",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: deque[Any] = deque()
        self._event = threading.Event()
        self._sync_waiting = False
        self._async_waiter: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._room_loop: asyncio.AbstractEventLoop | None = None

    # engine side
    def put(self, item: Any) -> bool:
        """Queue ``item``; True when the consumer has fallen behind."""
        with self._lock:
            self._items.append(item)
            full = len(self._items) >= HIGH_WATER
            waiter, self._async_waiter = self._async_waiter, None
            wake_sync, self._sync_waiting = self._sync_waiting, False
        if wake_sync:
            self._event.set()
        if waiter is not None:
            _wake(waiter)
        return full

    def room(self) -> asyncio.Future[None]:
        """(engine loop) A future that completes when the consumer has caught up."""
        loop = asyncio.get_running_loop()
        room = loop.create_future()
        with self._lock:
            if len(self._items) <= LOW_WATER:
                room.set_result(None)
            else:
                self._room, self._room_loop = room, loop
        return room

    # consumer side
    def _take(self) -> tuple[bool, Any]:
        """(under the lock) The next item, and whether there was one."""
        if not self._items:
            return False, None
        item = self._items.popleft()
        room = self._room
        if room is not None and len(self._items) <= LOW_WATER:
            self._room = None
            loop, self._room_loop = self._room_loop, None
            with contextlib.suppress(RuntimeError):  # the engine loop is gone
                if loop is not None:
                    loop.call_soon_threadsafe(_resolve, room)
        return True, item

    def get(self) -> Any:
        while True:
            with self._lock:
                found, item = self._take()
                if found:
                    return item
                self._event.clear()
                self._sync_waiting = True
            self._event.wait()

    async def aget(self) -> Any:
        while True:
            with self._lock:
                found, item = self._take()
                if found:
                    return item
                waiter = asyncio.get_running_loop().create_future()
                self._async_waiter = waiter
            await waiter

    def __len__(self) -> int:
        return len(self._items)


def _wake(waiter: asyncio.Future[None]) -> None:
    with contextlib.suppress(RuntimeError):  # the consumer's loop has closed: nobody waits
        waiter.get_loop().call_soon_threadsafe(_resolve, waiter)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ChunkStream:
    """What ``chat(..., stream=True)`` returns: an iterator of
    :class:`StreamChunk`, sync (``for``) or async (``async for``).

    While it is read it keeps ``text`` (everything so far), ``tool_calls``
    (the calls assembled from their pieces), ``finish_reason``, ``usage``
    (``{"input_tokens", "output_tokens"}`` once the provider reports them)
    and ``received`` (chunks read).
    """

    __slots__ = (
        "request_id",
        "channel",
        "_closer",
        "received",
        "finished",
        "finish_reason",
        "usage",
        "_text",
        "_calls",
        "__weakref__",
    )

    def __init__(self, request_id: str, closer: Callable[[], None]) -> None:
        self.request_id = request_id
        self.channel = _Channel()
        self._closer: Callable[[], None] | None = closer
        self.received = 0
        self.finished = False
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """``[{"index", "id", "name", "arguments"}]``: each call's pieces joined, in index order."""
        return [dict(self._calls[i], index=i) for i in sorted(self._calls)]

    # ---------------------------------------------------------- reading

    def __iter__(self) -> ChunkStream:
        return self

    def __next__(self) -> StreamChunk:
        if self.finished:
            raise StopIteration
        return self._accept(self.channel.get(), StopIteration)

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> StreamChunk:
        if self.finished:
            raise StopAsyncIteration
        return self._accept(await self.channel.aget(), StopAsyncIteration)

    def _accept(self, item: Any, end: type) -> StreamChunk:
        if item is END_OF_STREAM:
            self._end()
            raise end
        if isinstance(item, BaseException):
            self._end()
            raise item
        self.received += 1
        if item.text:
            self._text.append(item.text)
        for piece in item.tool_calls:
            call = self._calls.setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = call["id"] or piece.id
            call["name"] = call["name"] or piece.name
            call["arguments"] += piece.arguments
        if item.finish_reason:
            self.finish_reason = item.finish_reason
        if item.usage:
            self.usage = item.usage
        chunk: StreamChunk = item
        return chunk

    def _end(self) -> None:
        self.finished = True
        self._closer = None

    # ---------------------------------------------------------- closing

    def close(self) -> None:
        """Stop reading: the attempt is aborted, its slot and key freed."""
        closer, self._closer = self._closer, None
        self.finished = True
        if closer is not None:
            closer()

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> ChunkStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if self._closer is not None:
            with contextlib.suppress(Exception):
                self.close()

    def __repr__(self) -> str:
        return f"<ChunkStream {self.request_id} received={self.received} finished={self.finished}>"
