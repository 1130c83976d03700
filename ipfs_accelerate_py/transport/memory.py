"""An in-memory transport for tests: a function answers each request."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from .base import HttpRequest, HttpResponse, StreamResponse

Handler = Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse] | BaseException]

__all__ = ["MemoryTransport"]


class MemoryTransport:
    """Calls ``handler(request)``; an exception it returns or raises is raised.

    Every request is kept in ``requests`` (a test-only transport; bounded by
    the test).  Streams: a handler may return a ``StreamResponse``.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[HttpRequest] = []
        self.closed = False

    async def send(self, request: HttpRequest) -> HttpResponse | StreamResponse:
        self.requests.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def aclose(self) -> None:
        self.closed = True
