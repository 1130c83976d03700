"""The contract of a wire format: what a provider module in :mod:`.formats` declares.

A wire format is a module in ``ipfs_accelerate_py/simulator/formats/`` that
exports ``FORMAT`` (one :class:`WireFormat`) or ``FORMATS`` (a tuple of them).
Every module there is imported at start-up (see :mod:`.formats`); no registry
file is edited.  A format only maps the wire: which routes it serves, how a
request body becomes a :class:`Prepared` answer, how its errors, rate-limit
headers, key and streams look.  Everything else -- the response script,
latency, keys (``valid_keys``), rate limits, every fault, stream stalls/cuts/
malformed events, counters, client-disconnect counting -- is applied by
:mod:`.api` to every format alike.

A route's parser is ``parse(payload, scenario, params) -> Prepared``:

* ``payload`` is the decoded JSON body (``Route.payload="json"``, the default
  for methods with a body), ``None`` (GET/HEAD, or ``payload="none"``), the
  raw ``bytes`` (``payload="raw"``), or JSON-or-``None`` for an empty body
  (``payload="optional_json"``);
* ``scenario`` is the running :class:`~.scenario.Scenario` (``models``,
  ``embedding_dimensions``, ...);
* ``params`` is a :class:`Params` dict of the path's ``{name}`` segments, with
  ``params.query`` and ``params.headers`` of the request.

It raises :class:`WireError` to refuse the request (rendered with the
format's error body), or returns :class:`Prepared`.  It must do no I/O.

Stream events: ``Prepared.chunks(rid, created)`` returns a list of events;
the format's (or the ``Prepared``'s) :class:`StreamFraming` turns each into
bytes: a ``dict``/``list`` is JSON; a ``(event_name, data)`` tuple is a named
SSE event; ``bytes`` are written as they are.  The stream faults count these
events: ``stream_cut_after=2`` sends two events and closes the connection.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "JSON_ARRAY",
    "JSON_TYPE",
    "NAMED_SSE",
    "NDJSON",
    "SSE",
    "SSE_WITH_DONE",
    "Budget",
    "KeySource",
    "Params",
    "Prepared",
    "RateState",
    "Route",
    "StreamFraming",
    "WireError",
    "WireFormat",
    "bearer_key",
    "dumps",
    "first_key",
    "fixed_answer",
    "header_key",
    "no_key",
    "no_rate_headers",
    "query_key",
    "rfc3339_after",
    "simple_error_body",
]

JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"
SSE_TYPE = "text/event-stream"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PAYLOAD_KINDS = ("json", "optional_json", "raw", "none")
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
JsonObject = dict[str, Any]
"""A JSON object as a wire body carries it: its shape is the format's, checked where it is read."""
Headers = dict[str, str]
"""Response headers a format adds (rate limits, Retry-After)."""
Segment = str | tuple[str, str, bool, str]
"""A compiled route segment: a literal, or ``(prefix, name, greedy, suffix)``."""

_SEGMENT = re.compile(r"^([^{}]*)\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}([^{}]*)$")


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as the server writes it."""
    return _encode_json(obj).encode()


class WireError(Exception):
    """A request the provider would refuse; the format renders it as its error body.

    ``type``, ``code`` and ``param`` are optional details a format may show
    (OpenAI shows all three; most formats only the message, some the type);
    ``details``: structured objects a format adds (Google's ``error.details``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        details: list[JsonObject] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []
        self.param = param
        self.code = code
        self.type = type


@dataclass
class Prepared:
    """A validated request and everything needed to answer it.

    ``body(id, created)`` is the answer (a dict/list is sent as JSON, a
    ``str``/``bytes`` verbatim with ``content_type``); ``encode``, when set,
    gives the same answer already serialised (a faster path).  ``stream``:
    answer with ``chunks(id, created)`` framed by ``framing`` (the format's
    when None).  ``cost`` is the tokens the request consumes from a
    tokens-per-minute budget; ``prompt_tokens``/``completion_tokens`` are
    counted for successful answers; ``embedding_inputs`` is the number of
    inputs of an embeddings call (``None`` for other endpoints).  ``id`` is
    the request id without its ``req_`` prefix; ``created`` is Unix seconds.
    """

    model: str | None
    cost: int
    body: Callable[[str, int], Any]
    stream: bool = False
    chunks: Callable[[str, int], list[Any]] | None = None  # events: see StreamFraming.encode
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_inputs: int | None = None
    encode: Callable[[str, int], bytes] | None = None
    content_type: str = JSON_TYPE
    framing: StreamFraming | None = None


def fixed_answer(model: str | None, body: Any, cost: int = 0, **fields: Any) -> Prepared:
    """A :class:`Prepared` whose answer is ``body`` whatever the request's id
    (listings, metadata, counts); ``fields``: the rest of :class:`Prepared`."""
    return Prepared(model=model, cost=cost, body=lambda rid, created: body, **fields)


class Params(dict[str, str]):
    """The path parameters of a route (``{"model": "llama3"}``), plus the request's query/headers."""

    __slots__ = ("_request",)

    def __init__(self, values: Mapping[str, str], request: Any = None) -> None:
        super().__init__(values)
        self._request = request

    @property
    def query(self) -> Mapping[str, str]:
        """The query string as a (multi)dict; empty without a request."""
        return self._request.query if self._request is not None else {}

    @property
    def headers(self) -> Mapping[str, str]:
        """The request headers (case-insensitive); empty without a request."""
        return self._request.headers if self._request is not None else {}


Parser = Callable[[Any, Any, Params], Prepared]


# -- routes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One endpoint: ``method`` + ``pattern`` -> ``parse``.

    ``pattern`` is a path; a segment may hold one ``{name}`` with a literal
    prefix/suffix around it (``/v1beta/models/{model}:generateContent``,
    ``/v1/models/{model}:predict``); ``{name+}`` as the last segment matches
    the rest of the path, slashes included.  Exact paths are found by one
    dict lookup; patterns are tried most literal first.  ``targeted``: whether
    latency, limits, faults and the script apply when ``fault_paths`` is null
    (default: every method but GET and HEAD).  ``payload`` says how the body is
    read (see the module docstring).
    """

    method: str
    pattern: str
    parse: Parser
    payload: str | None = None
    targeted: bool | None = None

    def __post_init__(self) -> None:
        if self.method != self.method.upper() or not self.method.isalpha():
            raise ValueError(f"route method must be an upper-case HTTP method, got {self.method!r}")
        if not self.pattern.startswith("/"):
            raise ValueError(f"route pattern must start with '/', got {self.pattern!r}")
        if self.payload is None:
            object.__setattr__(self, "payload", "json" if self.method in BODY_METHODS else "none")
        if self.payload not in PAYLOAD_KINDS:
            raise ValueError(f"route payload must be one of {PAYLOAD_KINDS}, got {self.payload!r}")
        if self.targeted is None:
            object.__setattr__(self, "targeted", self.method not in ("GET", "HEAD"))
        compile_pattern(self.pattern)  # refuse a bad pattern early

    @property
    def is_exact(self) -> bool:
        return "{" not in self.pattern


def compile_pattern(pattern: str) -> tuple[Segment, ...]:
    """``pattern`` as a tuple of segments: literal ``str`` or ``(prefix, name, greedy, suffix)``."""
    out: list[Segment] = []
    parts = pattern[1:].split("/")
    for index, part in enumerate(parts):
        if "{" not in part and "}" not in part:
            out.append(part)
            continue
        found = _SEGMENT.match(part)
        if found is None:
            raise ValueError(
                f"bad route segment {part!r} in {pattern!r}: one {{name}} per "
                "segment, with an optional literal prefix and suffix"
            )
        prefix, name, greedy, suffix = found.groups()
        if greedy and index != len(parts) - 1:
            raise ValueError(f"{{{name}+}} must be the last segment of {pattern!r}")
        out.append((prefix, name, bool(greedy), suffix))
    return tuple(out)


# -- keys ---------------------------------------------------------------------------

KeySource = Callable[[Any], str | None]
"""``(request) -> key or None``: where a format's API key comes from."""


def bearer_key(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header value, or None."""
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


def _bearer(request: Any) -> str | None:
    return bearer_key(request.headers.get("Authorization"))


def header_key(name: str) -> KeySource:
    """The key is the whole value of header ``name`` (``x-api-key``, ``x-goog-api-key``)."""

    def source(request: Any) -> str | None:
        return request.headers.get(name) or None

    return source


def query_key(name: str) -> KeySource:
    """The key is query parameter ``name`` (Gemini's ``?key=``)."""

    def source(request: Any) -> str | None:
        return request.query.get(name) or None

    return source


def first_key(*sources: KeySource) -> KeySource:
    """The first key any of ``sources`` finds."""

    def source(request: Any) -> str | None:
        for each in sources:
            key = each(request)
            if key:
                return key
        return None

    return source


def no_key(request: Any) -> str | None:
    """A format without keys: every request is ``anonymous``."""
    return None


# -- rate limits --------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """One limit of one key's window: ``limit``, what is ``remaining``, ``reset`` seconds."""

    limit: int
    remaining: int
    reset: float


@dataclass(frozen=True)
class RateState:
    """A key's request and token budgets (None where no limit applies)."""

    requests: Budget | None
    tokens: Budget | None


def no_rate_headers(state: RateState) -> Headers:
    """Rate-limit headers of a format that sends none (the default)."""
    return {}


def rfc3339_after(seconds: float) -> str:
    """Wall-clock time ``seconds`` from now as RFC 3339 UTC (``2024-01-01T00:00:05Z``),
    for reset headers such as Anthropic's ``anthropic-ratelimit-requests-reset``."""
    moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- streams ------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamFraming:
    """How stream events become bytes.

    ``kind``: ``"sse"`` (``data: JSON\\n\\n``), ``"named_sse"`` (``event:
    NAME\\ndata: JSON\\n\\n``; NAME from a ``(name, data)`` tuple or the data's
    ``"type"``), ``"ndjson"`` (``JSON\\n``) or ``"json_array"`` (``[JSON,\\r\\nJSON]``).
    ``terminator`` is written after the last event (``data: [DONE]``; the
    array's ``]``); its absence marks a cut stream.  ``malformed`` is what a
    ``stream_malformed_after`` fault writes.
    """

    kind: str
    content_type: str
    terminator: bytes | None = None
    malformed: bytes = b'data: {"malformed": "x\n\n'

    def encode(self, event: Any, index: int) -> bytes:
        if isinstance(event, bytes):
            return event
        kind = self.kind
        if kind == "sse":
            return b"data: " + dumps(event) + b"\n\n"
        if kind == "ndjson":
            return dumps(event) + b"\n"
        if kind == "named_sse":
            name: str
            if isinstance(event, tuple):
                name, data = event
            else:
                name, data = event.get("type", "message"), event
            return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"
        if kind == "json_array":
            return (b"[" if index == 0 else b",\r\n") + dumps(event)
        raise ValueError(f"unknown stream framing kind {kind!r}")


SSE_WITH_DONE = StreamFraming(
    "sse",
    SSE_TYPE,
    b"data: [DONE]\n\n",
    b'data: {"id": "chatcmpl-malformed", "choices": [{"delta": {"content": "x\n\n',
)
SSE = StreamFraming("sse", SSE_TYPE)
NAMED_SSE = StreamFraming(
    "named_sse", SSE_TYPE, malformed=b'event: content_block_delta\ndata: {"type": "content_bl\n\n'
)
NDJSON = StreamFraming("ndjson", NDJSON_TYPE, malformed=b'{"model": "x", "message": {"con\n')
JSON_ARRAY = StreamFraming("json_array", JSON_TYPE, b"]", malformed=b',\r\n{"candidates": [{')


# -- errors -------------------------------------------------------------------------


def simple_error_body(exc: WireError) -> JsonObject:
    """``{"error": message, "error_type": type}`` (Ollama/TGI/TEI style; type when given)."""
    if exc.type is None:
        return {"error": exc.message}
    return {"error": exc.message, "error_type": exc.type}


def default_auth_error(key: str | None) -> WireError:
    if key is None:
        return WireError(401, "Missing API key.", type="authentication_error")
    return WireError(401, "Invalid API key.", type="authentication_error", code="invalid_api_key")


def default_rate_limit_error(exceeded: str, retry_after: str) -> WireError:
    return WireError(
        429,
        f"Rate limit reached for {exceeded} (simulated). Please try again in {retry_after}s.",
        type="rate_limit_error",
        code="rate_limit_exceeded",
    )


def default_model_not_found(model: str) -> WireError:
    return WireError(
        404,
        f"Model {model!r} not found.",
        type="not_found_error",
        code="model_not_found",
        param="model",
    )


# -- the format ---------------------------------------------------------------------


@dataclass(frozen=True)
class WireFormat:
    """One provider's wire format; every field but ``name`` and ``routes`` has a default.

    ``name``            short id, used in counters (``by_format``) and errors.
    ``routes``          the endpoints it serves (:class:`Route`), models listings included.
    ``key``             where the API key comes from (:data:`KeySource`; ``bearer`` default).
    ``error_body``      ``(WireError) -> body`` (dict/list as JSON, str/bytes verbatim).
    ``error_content_type`` content type of error bodies.
    ``auth_error``      ``(key or None) -> WireError`` for a missing/unknown key (401).
    ``rate_limit_error`` ``(exceeded "requests"|"tokens", retry_after text) -> WireError`` (429).
    ``model_not_found`` ``(model) -> WireError`` for ``strict_models``.
    ``rate_headers``    ``(RateState) -> {header: value}`` sent on every response to a
                        key with limits (none by default).
    ``overloaded_status`` status the ``outage`` fault answers (503; Anthropic: 529).
    ``framing``         default :class:`StreamFraming` of its streams.
    ``malformed_body``  the 200 body a ``malformed`` fault sends (invalid for this format).
    ``malformed_content_type`` its content type.
    """

    name: str
    routes: tuple[Route, ...]
    key: KeySource = _bearer
    error_body: Callable[[WireError], Any] = simple_error_body
    error_content_type: str = JSON_TYPE
    auth_error: Callable[[str | None], WireError] = default_auth_error
    rate_limit_error: Callable[[str, str], WireError] = default_rate_limit_error
    model_not_found: Callable[[str], WireError] = default_model_not_found
    rate_headers: Callable[[RateState], Headers] = no_rate_headers
    overloaded_status: int = 503
    framing: StreamFraming = SSE_WITH_DONE
    malformed_body: bytes = b'{"error": false, "result": {"text": "cut sh'
    malformed_content_type: str = JSON_TYPE

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", tuple(self.routes))
        if not self.name or not all(isinstance(r, Route) for r in self.routes):
            raise ValueError(f"format {self.name!r}: needs a name and Route objects")

    def with_routes(self, name: str, routes: Any) -> WireFormat:
        """This format's errors, keys and framing under another ``name`` with other ``routes``."""
        return replace(self, name=name, routes=tuple(routes))

    def render_error(self, exc: WireError, scenario: Any, request_id: str) -> tuple[bytes, str]:
        """``(body bytes, content type)`` of an error response."""
        body = self.error_body(exc)
        if isinstance(body, str):
            return body.encode(), self.error_content_type
        if isinstance(body, bytes):
            return body, self.error_content_type
        return dumps(body), self.error_content_type
