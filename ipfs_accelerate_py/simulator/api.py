"""The API endpoints of every wire format: one request through script, latency, keys,
limits, faults, answer.

The route (and so the wire format) is found first (:mod:`.routing`); the
format says where the key is, how errors, rate-limit headers, malformed bodies
and streams look (:mod:`.wireformat`); everything else here is the same for
every format.  The order of checks is documented in :mod:`.scenario`.  When
the behaviour is ``quiet`` (nothing configured but the normal answer) a
request goes straight from body parsing to the answer.  A request on a path
no format claims is forwarded to the scenario's ``upstream`` (:mod:`.proxy`)
at the normal-answer step, or answered 404 in the default format.  A request
whose client goes away while it is being handled (the server cancels the
handler, or a stream write fails) is counted as a client disconnect.  A body
is read only when the route needs it, after ``100 Continue`` when the client
waits for one (:mod:`.request_body`); answers made before that (keys, outage,
script, 404/405) leave the body to :func:`.request_body.settle_unread_body`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from .behaviour import Behaviour
from .counters import Counters, Ticket, key_fingerprint
from .proxy import PROXY_FORMAT, PROXY_ROUTE, Forwarder, ProxyRoute
from .ratelimit import retry_after_headers
from .request_body import read_body
from .request_log import current_faults
from .routing import Router
from .scenario import Scenario, ScriptEntry
from .wireformat import (
    JSON_TYPE,
    Headers,
    Params,
    Prepared,
    Route,
    WireError,
    WireFormat,
    bearer_key,
    dumps,
)

__all__ = ["ApiHandler", "bearer_key", "json_response", "with_headers"]

Answer = web.StreamResponse | Prepared
UPSTREAM_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)
_PROXIED = Prepared(model=None, cost=0, body=lambda rid, created: None)
_NO_PARAMS: dict[str, str] = {}


def with_headers(base: Mapping[str, str], extra: Mapping[str, str]) -> Mapping[str, str]:
    """``base`` with ``extra`` set over it, header names compared case-insensitively."""
    if not extra:
        return base
    merged: CIMultiDict[str] = CIMultiDict(base)
    for name, value in extra.items():
        merged[name] = value
    return merged


def json_response(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    request_id: str,
    content_type: str = JSON_TYPE,
) -> web.Response:
    """A JSON response; a ``str`` or ``bytes`` body is sent verbatim."""
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes):
        data = body
    else:
        data = dumps(body)
    out = with_headers({"Content-Type": content_type, "x-request-id": request_id}, headers)
    return web.Response(status=status, body=data, headers=out)


class _Call:
    """One API request as it goes through: its route, format, key and counters ticket."""

    __slots__ = (
        "request",
        "path",
        "fmt",
        "route",
        "params",
        "allowed",
        "key",
        "ident",
        "ticket",
        "raw",
    )

    def __init__(
        self,
        request: web.BaseRequest,
        path: str,
        fmt: WireFormat,
        route: Route | ProxyRoute | None,
        params: dict[str, str],
        allowed: list[str] | None,
        key: str | None,
        ident: str,
        ticket: Ticket,
    ) -> None:
        self.request = request
        self.path = path
        self.fmt = fmt
        self.route = route  # None: no route for this method (see allowed)
        self.params = params  # the route's path parameters
        self.allowed = allowed  # with no route: the methods the path has (None: no such path)
        self.key = key
        self.ident = ident
        self.ticket = ticket
        self.raw = b""


class ApiHandler:
    """Answers API requests of every format from a :class:`Behaviour`, counting into :class:`Counters`."""

    def __init__(
        self, behaviour: Behaviour, counters: Counters, router: Router, default: WireFormat
    ) -> None:
        self._behaviour = behaviour
        self._counters = counters
        self._router = router
        self._default = default
        self._forwarder = Forwarder()

    async def close(self) -> None:
        """Close the upstream connection pool (proxy mode)."""
        await self._forwarder.close()

    async def handle(self, request: web.BaseRequest, path: str) -> web.StreamResponse:
        found = self._router.resolve(request.method, path)
        route: Route | ProxyRoute | None = None
        params, allowed = _NO_PARAMS, None
        if found is not None:
            fmt, route, extra = found
            if isinstance(extra, list):  # the path is a format's, the method is not
                allowed = extra
            else:
                params = extra
        elif self._behaviour.scenario.upstream is not None:
            fmt, route = PROXY_FORMAT, PROXY_ROUTE
        else:
            fmt = self._default
        key = fmt.key(request)
        ident = key_fingerprint(key)
        ticket = self._counters.begin(path, ident, fmt.name)
        log = self._counters.request_log
        if log is not None:
            ticket.tag = request.headers.get(log.tag_header)
            ticket.faults = []
            current_faults.set(ticket.faults)
        call = _Call(request, path, fmt, route, params, allowed, key, ident, ticket)
        try:
            return await self._dispatch(call)
        except asyncio.CancelledError:
            ticket.disconnected = True
            raise
        finally:
            self._counters.finish(ticket)
            if ticket.faults is not None:
                current_faults.set(None)  # a later request on this connection may go unlogged

    async def _dispatch(self, call: _Call) -> web.StreamResponse:
        route = call.route
        method = call.request.method
        if route is None:
            if call.allowed is None:
                return self._error(call, WireError(404, f"Invalid URL ({method} {call.path})"), {})
            allowed = ", ".join(call.allowed)
            exc = WireError(405, f"Method {method} not allowed for {call.path}; use {allowed}.")
            return self._error(call, exc, {"Allow": allowed})
        behaviour = self._behaviour
        scenario = behaviour.scenario
        if behaviour.quiet:
            return await self._normal(call, scenario, {})
        if not scenario.targets(method, call.path, route.targeted):
            headers = (
                self._rate_headers(call, time.monotonic()) if scenario.rate_limits.active else {}
            )
            if scenario.valid_keys and call.key not in scenario.key_set:
                return self._error(call, call.fmt.auth_error(call.key), headers)
            return await self._normal(call, scenario, headers)
        entry = behaviour.take_script(call.path)
        if entry is not None:
            self._counters.fault("scripted")
            return await self._scripted(call, scenario, entry)
        return await self._targeted(call, scenario)

    # -- the three ways through -----------------------------------------------------

    async def _normal(
        self, call: _Call, scenario: Scenario, headers: Headers
    ) -> web.StreamResponse:
        prepared = await self._prepare(call, scenario, headers)
        if isinstance(prepared, web.StreamResponse):
            return prepared
        return await self._write(call, prepared, scenario, scenario, headers, 200)

    async def _targeted(self, call: _Call, scenario: Scenario) -> web.StreamResponse:
        behaviour = self._behaviour
        fmt = call.fmt
        delay = behaviour.delay()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        limited = scenario.rate_limits.active
        headers = self._rate_headers(call, now) if limited else {}
        if scenario.valid_keys and call.key not in scenario.key_set:
            return self._error(call, fmt.auth_error(call.key), headers)
        if scenario.outage:
            self._counters.fault("outage")
            return self._injected(call, fmt.overloaded_status, scenario, headers)
        prepared = await self._prepare(call, scenario, headers)
        if isinstance(prepared, web.StreamResponse):
            return prepared
        verdict = behaviour.admit(call.key, call.ident, prepared.cost, now) if limited else None
        if verdict is not None:
            headers = fmt.rate_headers(verdict.state)
            if verdict.exceeded is not None:  # refused
                return self._rate_limited(
                    call, verdict.exceeded, verdict.retry_after, scenario, headers
                )
        fault = behaviour.draw_fault()
        if fault == "error":
            self._counters.fault("error")
            return self._injected(call, scenario.error_status, scenario, headers)
        if fault is not None:
            self._counters.fault(fault)
            early = await self._fault(call, fault, scenario)
            if early is not None:
                return early
        return await self._write(call, prepared, scenario, scenario, headers, 200)

    async def _scripted(
        self, call: _Call, scenario: Scenario, entry: ScriptEntry
    ) -> web.StreamResponse:
        if entry.delay > 0:
            await asyncio.sleep(entry.delay)
        headers = dict(entry.headers)
        if entry.fault is not None:
            self._counters.fault(entry.fault)
            early = await self._fault(call, entry.fault, scenario)
            if early is not None:
                return early
        if entry.body is not None:
            call.ticket.status = entry.status
            return json_response(entry.status, entry.body, headers, call.ticket.request_id)
        if entry.status >= 400:
            exc = WireError(entry.status, f"Scripted error (status {entry.status}).")
            return self._error(call, exc, headers)
        prepared = await self._prepare(call, scenario, headers)
        if isinstance(prepared, web.StreamResponse):
            return prepared
        return await self._write(call, prepared, scenario, entry, headers, entry.status)

    # -- pieces ---------------------------------------------------------------------

    def _rate_headers(self, call: _Call, now: float) -> Headers:
        state = self._behaviour.rate_state(call.key, call.ident, now)
        return {} if state is None else call.fmt.rate_headers(state)

    async def _prepare(self, call: _Call, scenario: Scenario, headers: Headers) -> Answer:
        """Read, parse and validate the body; an error response if it is refused."""
        route = call.route
        assert route is not None  # _dispatch answered a request with no route
        request = call.request
        try:
            kind = route.payload
            if kind == "json":
                payload = await _read_json(request)
            elif kind == "none":
                payload = None
            elif kind == "raw":
                payload = await read_body(request)
            else:
                payload = await _read_json(request, optional=True)
            if isinstance(route, ProxyRoute):
                call.raw = payload
                return _PROXIED
            prepared: Prepared = route.parse(payload, scenario, Params(call.params, request))
            call.ticket.model = prepared.model
            if (
                scenario.strict_models
                and prepared.model is not None
                and prepared.model not in scenario.models
            ):
                raise call.fmt.model_not_found(prepared.model)
        except WireError as exc:
            return self._error(call, exc, headers)
        return prepared

    async def _fault(
        self, call: _Call, fault: str, scenario: Scenario
    ) -> web.StreamResponse | None:
        """Carry out drop, hang or malformed; None when the request goes on (after a hang)."""
        if fault == "drop":
            return _drop(call)
        if fault == "malformed":
            call.ticket.status = 200
            return web.Response(
                status=200,
                body=call.fmt.malformed_body,
                headers={
                    "Content-Type": call.fmt.malformed_content_type,
                    "x-request-id": call.ticket.request_id,
                },
            )
        await asyncio.sleep(scenario.hang_seconds)
        return None

    async def _write(
        self,
        call: _Call,
        prepared: Prepared,
        scenario: Scenario,
        faults: Any,
        headers: Headers,
        status: int,
    ) -> web.StreamResponse:
        """The normal answer, as one body or as a stream with ``faults``' stream faults."""
        if prepared is _PROXIED:
            return await self._forward(call, scenario, headers)
        ticket = call.ticket
        rid = ticket.request_id
        created = int(time.time())
        if prepared.stream:
            return await self._stream(call, prepared, scenario, faults, headers, status)
        ticket.status = status
        _served(ticket, prepared, status)
        if prepared.encode is not None:
            out = with_headers(
                {"Content-Type": prepared.content_type, "x-request-id": rid}, headers
            )
            return web.Response(status=status, body=prepared.encode(rid[4:], created), headers=out)
        return json_response(
            status, prepared.body(rid[4:], created), headers, rid, prepared.content_type
        )

    async def _forward(
        self, call: _Call, scenario: Scenario, headers: Headers
    ) -> web.StreamResponse:
        upstream = scenario.upstream
        if upstream is None:
            return self._error(
                call,
                WireError(
                    404, f"Invalid URL ({call.request.method} {call.path}); no upstream is set."
                ),
                headers,
            )
        try:
            response = await self._forwarder.forward(
                call.request,
                call.raw,
                upstream,
                headers,
                call.ticket.request_id,
                forward_credentials=scenario.forward_credentials,
            )
        except UPSTREAM_ERRORS as exc:
            message = f"Upstream {upstream} failed: {type(exc).__name__}."
            return self._error(call, WireError(502, message), headers)
        call.ticket.status = response.status
        return response

    async def _stream(
        self,
        call: _Call,
        prepared: Prepared,
        scenario: Scenario,
        faults: Any,
        headers: Headers,
        status: int,
    ) -> web.StreamResponse:
        ticket = call.ticket
        rid = ticket.request_id
        framing = prepared.framing or call.fmt.framing
        chunks = prepared.chunks
        if chunks is None:
            raise TypeError(f"the {call.fmt.name} format prepared a stream with no chunks")
        events = [
            framing.encode(event, index)
            for index, event in enumerate(chunks(rid[4:], int(time.time())))
        ]
        out = with_headers(
            {
                "Content-Type": framing.content_type,
                "Cache-Control": "no-cache",
                "x-request-id": rid,
            },
            headers,
        )
        response = web.StreamResponse(status=status, headers=out)
        try:
            await response.prepare(call.request)
            ticket.status = status
            self._counters.stream_started()
            if not await self._events(
                call.request, response, events, framing.malformed, scenario, faults
            ):
                return response
            if framing.terminator is not None:
                await response.write(framing.terminator)
            await response.write_eof()
        except ConnectionError:
            ticket.disconnected = True
            return response
        ticket.stream_finished = True
        _served(ticket, prepared, status)
        return response

    async def _events(
        self,
        request: web.BaseRequest,
        response: web.StreamResponse,
        events: list[bytes],
        malformed: bytes,
        scenario: Scenario,
        faults: Any,
    ) -> bool:
        """Write the events with stream faults; False when the stream was cut."""
        count = len(events)
        stall, cut, bad = (
            None if n is None else min(n, count)
            for n in (
                faults.stream_stall_after,
                faults.stream_cut_after,
                faults.stream_malformed_after,
            )
        )
        for index in range(count + 1):
            if index == stall:
                self._counters.fault("stream_stall")
                await asyncio.sleep(scenario.stall_seconds)
            if index == cut:
                self._counters.fault("stream_cut")
                _abort(request)
                return False
            if index == bad:
                self._counters.fault("stream_malformed")
                await response.write(malformed)
            if index == count:
                return True
            if index and scenario.stream_chunk_delay > 0:
                await asyncio.sleep(scenario.stream_chunk_delay)
            await response.write(events[index])
        return True

    def _error(self, call: _Call, exc: WireError, headers: Headers) -> web.Response:
        ticket = call.ticket
        ticket.status = exc.status
        body, content_type = call.fmt.render_error(exc, self._behaviour.scenario, ticket.request_id)
        out = with_headers(
            {"Content-Type": content_type, "x-request-id": ticket.request_id}, headers
        )
        return web.Response(status=exc.status, body=body, headers=out)

    def _injected(
        self, call: _Call, status: int, scenario: Scenario, headers: Headers
    ) -> web.Response:
        overloaded = call.fmt.overloaded_status
        if status in (429, 503, overloaded) and scenario.retry_after is not None:
            headers = dict(headers, **retry_after_headers(scenario.retry_after, exact=True))
        what = "outage" if status == overloaded and scenario.outage else "server error"
        return self._error(call, WireError(status, f"Simulated {what} (injected fault)."), headers)

    def _rate_limited(
        self, call: _Call, exceeded: str, wait: float, scenario: Scenario, headers: Headers
    ) -> web.Response:
        configured = scenario.retry_after
        headers = dict(headers)
        if configured is not None:
            headers.update(retry_after_headers(configured, exact=True))
        else:
            headers.update(retry_after_headers(wait, exact=False))
        return self._error(
            call, call.fmt.rate_limit_error(exceeded, headers["retry-after"]), headers
        )


async def _read_json(request: web.BaseRequest, optional: bool = False) -> Any:
    raw = await read_body(request)
    if optional and not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise WireError(400, "We could not parse the JSON body of your request.") from None


def _served(ticket: Ticket, prepared: Prepared, status: int) -> None:
    if status < 300:
        ticket.prompt_tokens = prepared.prompt_tokens
        ticket.completion_tokens = prepared.completion_tokens
        ticket.embedding_inputs = prepared.embedding_inputs


def _abort(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _drop(call: _Call) -> web.Response:
    """Close the connection without a response (the returned one is never sent)."""
    _abort(call.request)
    call.ticket.status = None
    return web.Response(status=200)
