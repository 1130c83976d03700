"""The transport seam: one request in, one response (or stream) out.

A transport knows HTTP and nothing else: no retries, no providers, no
policies.  It translates every exception of its own library into the typed
:class:`NetworkError` / :class:`RequestTimeoutError` /
:class:`MalformedResponseError` at this one boundary, and reads no more than
a request's ``max_body_bytes`` of a body or ``max_line_bytes`` of a stream
line (:class:`ResponseTooLargeError` past them).
"""

from __future__ import annotations

import json
import json.scanner
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from ..resilience.errors import MalformedResponseError

__all__ = ["HttpRequest", "HttpResponse", "StreamResponse", "Transport"]


@dataclass(slots=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    timeout: float | None = None
    stream: bool = False
    operation: dict[str, Any] | None = (
        None  # for a transport that is not HTTP (S3 through boto3): what to call
    )
    max_body_bytes: int | None = (
        None  # a body past it is not read on: ResponseTooLargeError (None: no limit)
    )
    max_line_bytes: int | None = (
        None  # a stream line past it is not read on: ResponseTooLargeError (None: no limit)
    )
    secret_headers: frozenset[str] = (
        frozenset()
    )  # names never sent to another origin (see .redirects)

    def __repr__(self) -> str:  # headers hold credentials: never shown
        return f"HttpRequest({self.method} {self.url}, {len(self.body or b'')} bytes)"

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


# what json.loads runs, without its two Python frames (typeshed mistypes make_scanner's argument)
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
# what json.loads skips around the value (a pattern that always matches, if only "")
_space = cast(Callable[[str, int], "re.Match[str]"], re.compile(r"[ \t\n\r]*").match)


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    value: Any = None  # a transport that is not HTTP hands its result here

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        body = self.body
        try:  # UTF-8 without a BOM, one value (whitespace around it), as JSON answers are
            text = body.decode() if isinstance(body, (bytes, bytearray)) else body
            value, end = _scan(text, _space(text, 0).end())
            if _space(text, end).end() == len(text):
                return value
        except (ValueError, StopIteration):
            pass
        try:  # a BOM, UTF-16 or -32 (detected from the first bytes), or not JSON
            return json.loads(body)
        except ValueError as exc:
            raise MalformedResponseError(
                f"response body is not valid JSON ({len(self.body)} bytes: {self.body[:80]!r})",
                status=self.status,
            ) from exc


class StreamResponse:
    """A 2xx response whose body is read line by line.

    ``lines()`` yields raw lines (without the line ending); ``aclose()``
    releases the connection and may be called at any point, more than once.
    """

    __slots__ = ("status", "headers", "_lines", "_close")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        lines: AsyncIterator[bytes],
        close: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self.status = status
        self.headers = headers
        self._lines = lines
        self._close = close

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def lines(self) -> AsyncIterator[bytes]:
        return self._lines

    async def aclose(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            await close()


class Transport(Protocol):
    async def send(self, request: HttpRequest) -> HttpResponse | StreamResponse:
        """Send one request.  With ``request.stream`` and a 2xx answer, a
        :class:`StreamResponse`; otherwise the whole :class:`HttpResponse`."""

    async def aclose(self) -> None: ...
