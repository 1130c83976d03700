"""The ``/v1`` endpoints: one request through script, latency, keys, limits, faults, answer.

The order of checks is documented in :mod:`.scenario`.  When the behaviour is
``quiet`` (nothing configured but the normal answer) a request goes straight
from body parsing to the answer.  A request whose client goes away while it
is being handled (the server cancels the handler, or a stream write fails) is
counted as a client disconnect.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable, Optional, Union

from aiohttp import web
from multidict import CIMultiDict

from . import openai_wire as wire
from .behaviour import Behaviour
from .counters import Counters, Ticket, key_fingerprint
from .ratelimit import retry_after_headers
from .scenario import Scenario, ScriptEntry

__all__ = ["ApiHandler", "bearer_key"]

Parser = Callable[[Any, Scenario], wire.Prepared]
Answer = Union[web.StreamResponse, wire.Prepared]

MALFORMED_BODY = (b'{"id": "chatcmpl-malformed", "object": "chat.completion", '
                  b'"choices": [{"index": 0, "message": {"role": "assistant", "content": "cut sh')
MALFORMED_EVENT = b'data: {"id": "chatcmpl-malformed", "choices": [{"delta": {"content": "x\n\n'
DONE_EVENT = b"data: [DONE]\n\n"
JSON_TYPE = "application/json"


def bearer_key(header: Optional[str]) -> Optional[str]:
    """The key of ``Authorization: Bearer KEY``, or None."""
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


def _models_parser(model_id: Optional[str]) -> Parser:
    def parse(payload: Any, scenario: Scenario) -> wire.Prepared:
        if model_id is None:
            listing = wire.models_list(scenario.models)
            return wire.Prepared(model=None, cost=0, body=lambda rid, created: listing)
        if model_id not in scenario.models:
            raise wire.model_not_found(model_id)
        found = wire.model_object(model_id)
        return wire.Prepared(model=model_id, cost=0, body=lambda rid, created: found)
    return parse


def _embeddings(payload: Any, scenario: Scenario) -> wire.Prepared:
    return wire.parse_embeddings(payload, scenario.embedding_dimensions)


ROUTES: dict[str, tuple[str, Parser]] = {
    "/v1/chat/completions": ("POST", lambda payload, scenario: wire.parse_chat(payload)),
    "/v1/completions": ("POST", lambda payload, scenario: wire.parse_completion(payload)),
    "/v1/embeddings": ("POST", _embeddings),
    "/v1/models": ("GET", _models_parser(None)),
}
MODEL_PREFIX = "/v1/models/"


def _route(method: str, path: str) -> tuple[str, Parser]:
    found = ROUTES.get(path)
    if found is not None:
        return found
    if path.startswith(MODEL_PREFIX) and len(path) > len(MODEL_PREFIX):
        return "GET", _models_parser(path[len(MODEL_PREFIX):])
    raise wire.WireError(404, f"Invalid URL ({method} {path})")


def with_headers(base: dict, extra: dict) -> Any:
    """``base`` with ``extra`` set over it, header names compared case-insensitively."""
    if not extra:
        return base
    merged = CIMultiDict(base)
    for name, value in extra.items():
        merged[name] = value
    return merged


def json_response(status: int, body: Any, headers: dict, request_id: str) -> web.Response:
    """A JSON response; a ``str`` body is sent verbatim."""
    data = body.encode() if isinstance(body, str) else wire.dumps(body)
    out = with_headers({"Content-Type": JSON_TYPE, "x-request-id": request_id}, headers)
    return web.Response(status=status, body=data, headers=out)


class ApiHandler:
    """Answers API requests from a :class:`Behaviour`, counting into :class:`Counters`."""

    def __init__(self, behaviour: Behaviour, counters: Counters) -> None:
        self._behaviour = behaviour
        self._counters = counters

    async def handle(self, request: web.BaseRequest, path: str) -> web.StreamResponse:
        key = bearer_key(request.headers.get("Authorization"))
        ident = key_fingerprint(key)
        ticket = self._counters.begin(path, ident)
        try:
            return await self._dispatch(request, path, key, ident, ticket)
        except asyncio.CancelledError:
            ticket.disconnected = True
            raise
        finally:
            self._counters.finish(ticket)

    async def _dispatch(self, request: web.BaseRequest, path: str, key: Optional[str],
                        ident: str, ticket: Ticket) -> web.StreamResponse:
        behaviour = self._behaviour
        scenario = behaviour.scenario
        try:
            method, parser = _route(request.method, path)
        except wire.WireError as exc:
            return self._error(ticket, exc, {})
        if request.method != method:
            exc = wire.WireError(405, f"Method {request.method} not allowed for {path}; "
                                      f"use {method}.")
            return self._error(ticket, exc, {"Allow": method})
        if behaviour.quiet:
            return await self._normal(request, parser, scenario, ticket, {})
        if not scenario.targets(method, path):
            headers = (behaviour.rate_headers(key, ident, time.monotonic())
                       if scenario.rate_limits.active else {})
            if scenario.valid_keys and key not in scenario.key_set:
                return self._error(ticket, _auth_error(key), headers)
            return await self._normal(request, parser, scenario, ticket, headers)
        entry = behaviour.take_script(path)
        if entry is not None:
            self._counters.fault("scripted")
            return await self._scripted(request, parser, scenario, entry, ticket)
        return await self._targeted(request, parser, scenario, key, ident, ticket)

    # -- the three ways through -----------------------------------------------------

    async def _normal(self, request: web.BaseRequest, parser: Parser, scenario: Scenario,
                      ticket: Ticket, headers: dict) -> web.StreamResponse:
        prepared = await self._prepare(request, parser, scenario, ticket, headers)
        if isinstance(prepared, web.StreamResponse):
            return prepared
        return await self._write(request, prepared, scenario, scenario, ticket, headers, 200)

    async def _targeted(self, request: web.BaseRequest, parser: Parser, scenario: Scenario,
                        key: Optional[str], ident: str, ticket: Ticket) -> web.StreamResponse:
        behaviour = self._behaviour
        delay = behaviour.delay()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        limited = scenario.rate_limits.active
        headers = behaviour.rate_headers(key, ident, now) if limited else {}
        if scenario.valid_keys and key not in scenario.key_set:
            return self._error(ticket, _auth_error(key), headers)
        if scenario.outage:
            self._counters.fault("outage")
            return self._injected(ticket, 503, scenario, headers)
        prepared = await self._prepare(request, parser, scenario, ticket, headers)
        if isinstance(prepared, web.StreamResponse):
            return prepared
        verdict = behaviour.admit(key, ident, prepared.cost, now) if limited else None
        if verdict is not None:
            headers = dict(verdict.headers)
            if not verdict.allowed:
                return self._rate_limited(ticket, verdict.exceeded, verdict.retry_after,
                                          scenario, headers)
        fault = behaviour.draw_fault()
        if fault == "error":
            self._counters.fault("error")
            return self._injected(ticket, scenario.error_status, scenario, headers)
        if fault is not None:
            self._counters.fault(fault)
            early = await self._fault(request, fault, scenario, ticket)
            if early is not None:
                return early
        return await self._write(request, prepared, scenario, scenario, ticket, headers, 200)

    async def _scripted(self, request: web.BaseRequest, parser: Parser, scenario: Scenario,
                        entry: ScriptEntry, ticket: Ticket) -> web.StreamResponse:
        if entry.delay > 0:
            await asyncio.sleep(entry.delay)
        headers = dict(entry.headers)
        if entry.fault is not None:
            self._counters.fault(entry.fault)
            early = await self._fault(request, entry.fault, scenario, ticket)
            if early is not None:
                return early
        if entry.body is not None:
            ticket.status = entry.status
            return json_response(entry.status, entry.body, headers, ticket.request_id)
        if entry.status >= 400:
            exc = wire.WireError(entry.status, f"Scripted error (status {entry.status}).")
            return self._error(ticket, exc, headers)
        prepared = await self._prepare(request, parser, scenario, ticket, headers)
        if isinstance(prepared, web.StreamResponse):
            return prepared
        return await self._write(request, prepared, scenario, entry, ticket, headers,
                                 entry.status)

    # -- pieces ---------------------------------------------------------------------

    async def _prepare(self, request: web.BaseRequest, parser: Parser, scenario: Scenario,
                       ticket: Ticket, headers: dict) -> Answer:
        """Parse and validate the body; an error response if it is refused."""
        try:
            payload = await _read_json(request) if request.method == "POST" else None
            prepared = parser(payload, scenario)
            ticket.model = prepared.model
            if (scenario.strict_models and prepared.model is not None
                    and prepared.model not in scenario.models):
                raise wire.model_not_found(prepared.model)
        except wire.WireError as exc:
            return self._error(ticket, exc, headers)
        return prepared

    async def _fault(self, request: web.BaseRequest, fault: str, scenario: Scenario,
                     ticket: Ticket) -> Optional[web.StreamResponse]:
        """Carry out drop, hang or malformed; None when the request goes on (after a hang)."""
        if fault == "drop":
            return _drop(request, ticket)
        if fault == "malformed":
            ticket.status = 200
            return web.Response(status=200, body=MALFORMED_BODY,
                                headers={"Content-Type": JSON_TYPE,
                                         "x-request-id": ticket.request_id})
        await asyncio.sleep(scenario.hang_seconds)
        return None

    async def _write(self, request: web.BaseRequest, prepared: wire.Prepared,
                     scenario: Scenario, faults: Any, ticket: Ticket, headers: dict,
                     status: int) -> web.StreamResponse:
        """The normal answer, as JSON or as a stream with ``faults``' stream faults."""
        rid = ticket.request_id
        created = int(time.time())
        if prepared.stream:
            return await self._stream(request, prepared, scenario, faults, ticket, headers,
                                      status)
        ticket.status = status
        _served(ticket, prepared, status)
        if prepared.encode is not None:
            out = with_headers({"Content-Type": JSON_TYPE, "x-request-id": rid}, headers)
            return web.Response(status=status, body=prepared.encode(rid[4:], created),
                                headers=out)
        return json_response(status, prepared.body(rid[4:], created), headers, rid)

    async def _stream(self, request: web.BaseRequest, prepared: wire.Prepared,
                      scenario: Scenario, faults: Any, ticket: Ticket, headers: dict,
                      status: int) -> web.StreamResponse:
        rid = ticket.request_id
        events = [b"data: " + wire.dumps(chunk) + b"\n\n"
                  for chunk in prepared.chunks(rid[4:], int(time.time()))]
        out = with_headers({"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                            "x-request-id": rid}, headers)
        response = web.StreamResponse(status=status, headers=out)
        try:
            await response.prepare(request)
            ticket.status = status
            self._counters.stream_started()
            if not await self._events(request, response, events, scenario, faults):
                return response
            await response.write(DONE_EVENT)
            await response.write_eof()
        except ConnectionError:
            ticket.disconnected = True
            return response
        ticket.stream_finished = True
        _served(ticket, prepared, status)
        return response

    async def _events(self, request: web.BaseRequest, response: web.StreamResponse,
                      events: list, scenario: Scenario, faults: Any) -> bool:
        """Write the events with stream faults; False when the stream was cut."""
        count = len(events)
        stall, cut, bad = (None if n is None else min(n, count) for n in (
            faults.stream_stall_after, faults.stream_cut_after, faults.stream_malformed_after))
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
                await response.write(MALFORMED_EVENT)
            if index == count:
                return True
            if index and scenario.stream_chunk_delay > 0:
                await asyncio.sleep(scenario.stream_chunk_delay)
            await response.write(events[index])
        return True

    def _error(self, ticket: Ticket, exc: wire.WireError, headers: dict) -> web.Response:
        ticket.status = exc.status
        return json_response(exc.status, exc.body(), headers, ticket.request_id)

    def _injected(self, ticket: Ticket, status: int, scenario: Scenario,
                  headers: dict) -> web.Response:
        if status in (429, 503) and scenario.retry_after is not None:
            headers = dict(headers, **retry_after_headers(scenario.retry_after, exact=True))
        what = "outage" if status == 503 and scenario.outage else "server error"
        return self._error(ticket, wire.WireError(status, f"Simulated {what} (injected fault)."),
                           headers)

    def _rate_limited(self, ticket: Ticket, exceeded: str, wait: float, scenario: Scenario,
                      headers: dict) -> web.Response:
        exact = scenario.retry_after is not None
        headers.update(retry_after_headers(scenario.retry_after if exact else wait, exact=exact))
        exc = wire.WireError(429, f"Rate limit reached for {exceeded} (simulated). Please try "
                                  f"again in {headers['retry-after']}s.",
                             type=exceeded, code="rate_limit_exceeded")
        return self._error(ticket, exc, headers)


def _auth_error(key: Optional[str]) -> wire.WireError:
    if key is None:
        return wire.WireError(401, "You didn't provide an API key. Provide it in the "
                                   "Authorization header (Bearer auth).")
    return wire.WireError(401, "Incorrect API key provided.", code="invalid_api_key")


async def _read_json(request: web.BaseRequest) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw)
    except ValueError:
        raise wire.WireError(400, "We could not parse the JSON body of your request.") from None


def _served(ticket: Ticket, prepared: wire.Prepared, status: int) -> None:
    if status < 300:
        ticket.prompt_tokens = prepared.prompt_tokens
        ticket.completion_tokens = prepared.completion_tokens
        ticket.embedding_inputs = prepared.embedding_inputs


def _abort(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _drop(request: web.BaseRequest, ticket: Ticket) -> web.Response:
    """Close the connection without a response (the returned one is never sent)."""
    _abort(request)
    ticket.status = None
    return web.Response(status=200)
