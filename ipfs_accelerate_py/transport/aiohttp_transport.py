"""The aiohttp transport: one pooled, keep-alive session per event loop.

aiohttp was chosen on measurement (see DESIGN.md): about ten times the
throughput of httpx per CPU on this kind of machine.

With ``trust_env`` (the default) a session honours the environment as it is
when the session opens: ``HTTP(S)_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE``
and ``SSL_CERT_DIR`` (see :mod:`.environment`).  aiohttp's own
``trust_env`` is not used: it reads the proxy variables and ``.netrc`` in a
worker thread on every request.
"""

from __future__ import annotations

import asyncio
import socket
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from ..resilience.errors import (
    ApiError,
    MalformedResponseError,
    NetworkError,
    RequestTimeoutError,
    too_large,
)
from .base import HttpRequest, HttpResponse, StreamResponse
from .environment import ProxyTable, verified_ssl_context
from .redirects import MAX_REDIRECTS, next_hop

__all__ = ["AiohttpTransport"]

DEFAULT_KEEPALIVE_TIMEOUT = 30.0
READ_CHUNK = 64 * 1024  # bytes read at a time: past a limit, at most this much more is held


class AiohttpTransport:
    """Owns one ``aiohttp.ClientSession``, created lazily on the running loop."""

    def __init__(
        self, keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT, *, trust_env: bool = True
    ) -> None:
        self._keepalive_timeout = keepalive_timeout
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._proxies = ProxyTable({})
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}
        self._forsaken: list[aiohttp.ClientSession] = []  # a parent's sessions, in a forked child

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            self._proxies = ProxyTable.from_environment() if self._trust_env else ProxyTable({})
            connector = aiohttp.TCPConnector(
                limit=0,  # the engine bounds concurrency; the pool must not queue behind it
                keepalive_timeout=self._keepalive_timeout,
                enable_cleanup_closed=False,
                ssl=verified_ssl_context() if self._trust_env else True,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                skip_auto_headers=(
                    "User-Agent",
                ),  # the wire's build_request sends ours (a call may drop it)
            )
            self._session = session
        return session

    def _timeout(self, seconds: float | None) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            if len(self._timeouts) > 64:
                self._timeouts.clear()
            timeout = aiohttp.ClientTimeout(total=seconds, sock_read=None)
            self._timeouts[seconds] = timeout
        return timeout

    async def send(self, request: HttpRequest) -> HttpResponse | StreamResponse:
        first, loop = request, asyncio.get_running_loop()
        deadline = (
            None if request.timeout is None else loop.time() + request.timeout
        )  # one for all the hops
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self._send_once(request)
            try:
                hop = next_hop(request, resp.status, resp.headers.get("Location"))
            except (
                ValueError
            ) as exc:  # a Location no URL can be made of (a port of 99999, a broken IPv6 host)
                resp.release()
                raise NetworkError(
                    f"unusable redirect Location from {_where(request)}: {exc}", should_retry=False
                ) from None
            if hop is None:
                break
            resp.release()
            if deadline is not None:
                hop.timeout = deadline - loop.time()
                if hop.timeout <= 0:
                    raise RequestTimeoutError(
                        f"no answer within {first.timeout:.3g}s from {_where(first)} (redirected to {_where(hop)})"
                    )
            request = hop
        else:
            resp.release()
            raise NetworkError(
                f"more than {MAX_REDIRECTS} redirects from {_where(first)} (last to {_where(request)})",
                should_retry=False,
            )
        if request.stream and 200 <= resp.status < 300:
            return StreamResponse(
                resp.status, resp.headers, _iter_lines(resp, request), _closer(resp)
            )
        try:
            body = await _read_body(resp, request)
        except BaseException as exc:
            resp.close()  # what is left unread is not read: the connection goes
            raise _translate(exc, request) from exc
        return HttpResponse(resp.status, resp.headers, body)

    async def _send_once(self, request: HttpRequest) -> aiohttp.ClientResponse:
        """One hop; redirects are followed by :meth:`send`, by the rule of
        :mod:`.redirects` (aiohttp's own would hand ``x-api-key`` to any host)."""
        try:
            return await self._get_session().request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body,
                allow_redirects=False,
                proxy=self._proxies.proxy_for(request.url),
                # a stream's pace is the engine's to watch (time to first chunk, stalls)
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=request.timeout)
                if request.stream
                else self._timeout(request.timeout),
            )
        except BaseException as exc:
            raise _translate(exc, request) from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def after_fork(self) -> None:
        """(a forked child) The session, its loop and its keep-alive sockets are
        the parent's: the next request opens a session of the child's own.  The
        old one is kept, never closed here (that needs the parent's loop), so
        that collecting it does not warn of an unclosed session."""
        if self._session is not None:
            self._forsaken.append(self._session)
            self._session = None


def _closer(resp: aiohttp.ClientResponse) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        resp.close()

    return close


async def _read_body(resp: aiohttp.ClientResponse, request: HttpRequest) -> bytes:
    """The whole body, read a chunk at a time and refused as soon as it
    passes ``request.max_body_bytes`` (a Content-Length past it: before
    reading any), so that memory stays bounded by the limit."""
    limit = request.max_body_bytes
    if limit is None:
        return await resp.read()
    declared = resp.content_length
    if declared is not None and not resp.headers.get("Content-Encoding"):
        if declared > limit:
            raise too_large("response body", limit, 0, "max_response_bytes", _where(request))
        # aiohttp reads no more than a plain body's Content-Length: within the limit
        return await resp.read()
    parts: list[bytes] = []
    size = 0
    async for part in resp.content.iter_chunked(READ_CHUNK):
        size += len(part)
        if size > limit:
            raise too_large("response body", limit, size, "max_response_bytes", _where(request))
        parts.append(part)
    return b"".join(parts)


async def _iter_lines(resp: aiohttp.ClientResponse, request: HttpRequest) -> AsyncIterator[bytes]:
    """The body's lines, without their endings; a line past
    ``request.max_line_bytes`` ends it with ResponseTooLargeError, having
    held no more than the limit and one read."""
    limit = request.max_line_bytes
    try:
        held: list[bytes] = []  # the pieces of the line not yet ended
        size = 0
        while True:
            try:
                part = await resp.content.read(
                    READ_CHUNK
                )  # at most one chunk: what is held stays bounded
            except BaseException as exc:
                raise _translate(exc, request) from exc
            if not part:
                break
            start = 0
            while True:
                end = part.find(b"\n", start)
                if end < 0:
                    break
                piece = part[start:end]
                if held:
                    held.append(piece)
                    piece, held = b"".join(held), []
                size = 0
                if limit is not None and len(piece) > limit:
                    raise too_large(
                        "a stream line", limit, len(piece), "max_stream_line_bytes", _where(request)
                    )
                yield piece.rstrip(b"\r")
                start = end + 1
            if start < len(part):
                held.append(part[start:])
                size += len(part) - start
                if limit is not None and size > limit:
                    raise too_large(
                        "a stream line", limit, size, "max_stream_line_bytes", _where(request)
                    )
        if held:
            yield b"".join(held).rstrip(b"\r")
    finally:
        resp.close()


def _translate(exc: BaseException, request: HttpRequest) -> BaseException:
    """aiohttp's exceptions become ours here, and nowhere else, saying what
    happened in words ("connection refused to 127.0.0.1:9")."""
    if isinstance(exc, (asyncio.CancelledError, ApiError)) or not isinstance(exc, Exception):
        return exc  # ours already, or not an error to translate (a cancel, an exit)
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return RequestTimeoutError(
            f"no answer within {request.timeout:.3g}s from {_where(request)}"
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return NetworkError(
            f"TLS certificate verify failed for {_where(request)}: {exc.certificate_error}; "
            "if a private CA signs the server's certificate, set SSL_CERT_FILE to its bundle",
            should_retry=False,  # the next attempt would meet the same certificate
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return NetworkError(f"connection to {_where(request)} broke mid-body: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return NetworkError(_connect_failure(exc, request))
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return NetworkError(
            f"{_host_port(request)} closed the connection without answering ({_where(request)})"
        )
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return NetworkError(f"{type(exc).__name__} talking to {_where(request)}: {exc}")
    if isinstance(
        exc, aiohttp.http_exceptions.HttpProcessingError
    ):  # LineTooLong, BadHttpMessage, ...
        return MalformedResponseError(
            f"malformed HTTP from {_where(request)}: {type(exc).__name__}: {exc}"
        )
    return NetworkError(
        f"{type(exc).__name__} talking to {_where(request)}: {exc}"
    )  # none escapes untranslated


def _connect_failure(exc: aiohttp.ClientConnectorError, request: HttpRequest) -> str:
    """Why a connection could not be made, in words."""
    where = _host_port(request)
    cause = exc.os_error
    if isinstance(
        exc, aiohttp.ClientSSLError
    ):  # a certificate that does not verify is handled before
        reason = getattr(cause, "reason", None) or getattr(cause, "verify_message", None) or cause
        return f"TLS handshake with {where} failed: {reason}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(cause, socket.gaierror):
        return f"cannot resolve host {exc.host!r}: {getattr(cause, 'strerror', None) or cause}"
    if isinstance(cause, ConnectionRefusedError):
        return f"connection refused to {where}"
    return f"cannot connect to {where}: {getattr(cause, 'strerror', None) or cause}"


def _host_port(request: HttpRequest) -> str:
    parts = urllib.parse.urlsplit(request.url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _where(request: HttpRequest) -> str:
    url = request.url
    cut = url.find("?")
    return url if cut < 0 else url[:cut]
