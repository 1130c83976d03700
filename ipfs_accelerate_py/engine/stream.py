"""A stream of chunks handed from the engine loop to the caller.

The engine puts chunks in; the caller iterates (``for chunk in stream``).
The stream ends with the provider's end marker, or with a typed error that
says how many chunks had arrived; nothing is silently truncated.  Closing
it early (``close()``, ``with``, or ``break`` then garbage collection) aborts
the attempt and frees its slot.
"""

from __future__ import annotations

import queue
from typing import Any, Callable, Iterator, Optional

__all__ = ["ChunkStream", "END_OF_STREAM"]

END_OF_STREAM = object()
"""Put in a stream's channel after its last chunk."""


class ChunkStream:
    __slots__ = ("request_id", "channel", "_closer", "received", "finished", "usage", "__weakref__")

    def __init__(self, request_id: str, closer: Callable[[], None]) -> None:
        self.request_id = request_id
        self.channel: "queue.SimpleQueue[Any]" = queue.SimpleQueue()  # the engine puts, the caller gets
        self._closer: Optional[Callable[[], None]] = closer
        self.received = 0
        self.finished = False
        self.usage: Optional[dict] = None

    # caller side
    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self.finished:
            raise StopIteration
        item = self.channel.get()
        if item is END_OF_STREAM:
            self.finished = True
            self._closer = None
            raise StopIteration
        if isinstance(item, BaseException):
            self.finished = True
            self._closer = None
            raise item
        self.received += 1
        if isinstance(item, dict) and item.get("usage"):
            self.usage = item["usage"]
        return item

    def close(self) -> None:
        closer, self._closer = self._closer, None
        self.finished = True
        if closer is not None:
            closer()

    def __enter__(self) -> "ChunkStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if self._closer is not None:
            try:
                self.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"<ChunkStream {self.request_id} received={self.received} finished={self.finished}>"
