"""What every wire adapter offers the engine, and the defaults most share.

A wire adapter is pure mapping, typed values in and out:

- *who*: a :class:`ProviderSpec` (name, default base URL, where the key and
  the URL come from, the simulator's path for this format);
- *requests*: ``build_request(endpoint, data, ...)`` -> ``HttpRequest``
  (authentication headers included); a provider says how it spells its
  paths (``path_prefixes``, ``base_url_prefixes``) and rewrites what it
  sends in ``prepare``;
- *responses*: ``parse_response`` (JSON, or :class:`MalformedResponseError`),
  ``answer_for_status`` (a non-2xx that is an answer, not a failure: a
  readiness probe's "not ready"), ``error_for`` (the typed error with the
  provider's own message and Retry-After), ``usage`` (tokens in and out);
- *streams*: ``stream_format`` (``"sse"`` or ``"ndjson"``),
  ``parse_stream_event(event) -> (chunk or None, done)`` and
  ``stream_delta(chunk) -> StreamDelta`` (the chunk in common terms: text,
  tool-call pieces, finish reason, usage);
- *operations*: what the public methods send (``chat_request``,
  ``completion_request``, ``embeddings_request``, ``models_request``);
- *batching*: which requests carry inputs that may be combined, how to put
  them together and how to split the answer.

Nothing here queues, retries, waits or counts: that is the engine's.
"""

from __future__ import annotations

import functools
import json
import json.encoder
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..resilience.batching import NO_LIMITS, BatchLimits, split_by_index
from ..resilience.errors import ApiError, InvalidInputError, MalformedResponseError, classify_status
from ..transport.base import HttpRequest, HttpResponse
from ..transport.environment import USER_AGENT
from ..transport.sse import SseEvent

__all__ = [
    "EMPTY_DELTA",
    "Event",
    "ndjson_line",
    "sse_event",
    "ProviderSpec",
    "StreamDelta",
    "ToolCallDelta",
    "Wire",
    "apportion",
    "body_json",
    "finish_reason",
    "json_body",
    "retyped",
    "token_count",
    "with_headers",
    "with_query",
]

JSON_TYPE = "application/json"
STREAM_TYPES = {"sse": "text/event-stream", "ndjson": "application/x-ndjson"}
"""What a streaming request accepts, by ``Wire.stream_format``."""
Event = SseEvent | bytes
"""An SSE event (``stream_format == "sse"``) or one NDJSON line."""


def sse_event(event: Event) -> SseEvent:
    """``event`` as the SSE event an SSE provider's stream is made of."""
    if isinstance(event, bytes):
        raise MalformedResponseError(f"expected an SSE event, got a raw line: {event[:80]!r}")
    return event


def ndjson_line(event: Event) -> bytes:
    """``event`` as the NDJSON line an NDJSON provider's stream is made of."""
    if not isinstance(event, bytes):
        raise MalformedResponseError(f"expected an NDJSON line, got an SSE event: {event!r:.80}")
    return event


class ToolCallDelta(NamedTuple):
    """A piece of a tool (function) call as it streams in.

    Pieces of one call share ``index`` (its position among the message's
    calls, as the provider numbers them); ``id`` and ``name`` come on the
    first piece (None after); ``arguments`` is a fragment of the JSON
    arguments text: joined in order, a call's fragments are the whole JSON.
    """

    index: int  # type: ignore[assignment]  # the field shadows tuple.index: the providers' own name for it
    id: str | None
    name: str | None
    arguments: str


class StreamDelta(NamedTuple):
    """What one stream chunk adds, in the same terms for every provider.

    ``finish_reason`` is in OpenAI's words where one fits (``"stop"``,
    ``"length"``, ``"tool_calls"``, ``"content_filter"``), else the
    provider's own, lowercased (see :func:`finish_reason`).  ``usage`` is
    ``(input tokens, output tokens)`` when the chunk reports them (0 for a
    figure it does not report), else None.
    """

    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None


EMPTY_DELTA = StreamDelta()

_FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "eos_token": "stop",
    "length": "length",
    "max_tokens": "length",
    "model_length": "length",
    "tool_calls": "tool_calls",
    "tool_use": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "safety": "content_filter",
    "recitation": "content_filter",
    "blocklist": "content_filter",
    "prohibited_content": "content_filter",
    "spii": "content_filter",
}


def finish_reason(raw: Any) -> str | None:
    """A provider's finish reason in OpenAI's words where one fits
    (``"end_turn"`` -> ``"stop"``, ``"MAX_TOKENS"`` -> ``"length"``), else
    its own, lowercased; None for no reason."""
    if not isinstance(raw, str) or not raw:
        return None
    key = raw.lower()
    return _FINISH_REASONS.get(key, key)


@dataclass(frozen=True)
class ProviderSpec:
    """Who a provider is: its name, where it lives, where its key comes from."""

    name: str
    default_base_url: str
    key_metadata: tuple[str, ...] = ()
    key_env: tuple[str, ...] = ()
    base_url_metadata: tuple[str, ...] = ()
    base_url_env: tuple[str, ...] = ()
    requires_key: bool = True
    embedding_models: tuple[str, ...] = ()
    batch_any_model: bool = False  # the server embeds with one model: every request is batchable
    simulator_path: str = ""  # where the simulator serves this format, below its root
    default_chat_model: str | None = None
    default_embedding_model: str | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    extra_retryable_statuses: frozenset[int] = (
        frozenset()
    )  # the provider's own "try again" codes (Groq's 498)


_COMPACT_JSON = json.JSONEncoder(
    separators=(",", ":")
)  # one encoder: json.dumps builds one a call for these separators


# the C encoder JSONEncoder.encode makes for each call, made here without its two Python frames
_C_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)


def json_body(data: Any, provider: str) -> bytes:
    try:
        if _C_ENCODER is not None:
            return "".join(
                _C_ENCODER(
                    {},  # its own markers, for the circular-reference check
                    _COMPACT_JSON.default,
                    json.encoder.encode_basestring_ascii,  # ensure_ascii, as _COMPACT_JSON
                    None,  # no indent
                    _COMPACT_JSON.key_separator,
                    _COMPACT_JSON.item_separator,
                    _COMPACT_JSON.sort_keys,
                    _COMPACT_JSON.skipkeys,
                    _COMPACT_JSON.allow_nan,
                )(data, 0)
            ).encode()
        return _COMPACT_JSON.encode(data).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"request data cannot be sent as JSON: {exc}", provider=provider
        ) from exc


@functools.lru_cache(maxsize=64)
def _lowered(names: tuple[str, ...]) -> frozenset[str]:
    """The header names, lower-cased (a provider's few auth header names: computed once)."""
    return frozenset(name.lower() for name in names)


_REMEMBERED = 256  # entries in each of a provider's caches; a full one starts again


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """``cache[key] = value``, keeping the cache at most ``_REMEMBERED`` entries."""
    if len(cache) >= _REMEMBERED:
        cache.clear()
    cache[key] = value


def body_json(body: Any) -> Any:
    """A body's JSON when it is JSON text (bytes or str), else the body as it is."""
    if isinstance(body, (bytes, bytearray, str)):
        try:
            return json.loads(body)
        except ValueError:
            return body
    return body


def with_headers(
    headers: Mapping[str, str], extra: Sequence[tuple[str, str | None]]
) -> dict[str, str]:
    """``headers`` with ``extra`` laid over them: a name replaces the same
    name in any case; a None value removes it."""
    out = dict(headers)
    for name, value in extra:
        for present in [k for k in out if k.lower() == name.lower()]:
            del out[present]
        if value is not None:
            out[name] = value
    return out


def with_query(url: str, extra: Sequence[tuple[str, Any]]) -> str:
    """``url`` with ``extra`` in its query string, replacing parameters of the
    same name; a list value repeats its name; bools are ``true``/``false``."""
    parts = urllib.parse.urlsplit(url)
    names = {name for name, _ in extra}
    query = [
        (k, v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if k not in names
    ]
    for name, value in extra:
        for item in value if isinstance(value, (list, tuple)) else (value,):
            query.append((name, str(item).lower() if isinstance(item, bool) else str(item)))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def token_count(value: Any) -> int:
    """A token count as a provider reported it: a positive int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def retyped(error: ApiError, cls: type[ApiError], **changes: Any) -> ApiError:
    """``error`` as an instance of ``cls``, every field kept but those ``changes`` set."""
    new = cls(changes.get("message", error.message))
    new.__dict__.update(error.__dict__, **changes)
    return new


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder): the
    parts are whole numbers and add up to ``total`` exactly."""
    weight_sum = sum(weights)
    if weight_sum <= 0:
        weights, weight_sum = [1] * len(weights), len(weights)
    exact = [total * w / weight_sum for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


class Wire:
    """Defaults for a JSON-over-HTTP API with bearer-token authentication.

    A provider overrides what differs; an OpenAI-compatible one only needs
    its own :class:`ProviderSpec`.
    """

    stream_format = "sse"
    get_endpoints: frozenset[str] = frozenset()  # endpoints (first path segment) read with GET
    path_prefixes: tuple[str, ...] = ()
    """Where the API's paths live (Anthropic's ``"v1/"``): a path under none of
    them is put under the first (``"messages"`` -> ``"v1/messages"``)."""
    base_url_prefixes: tuple[str, ...] = ()
    """What the base URL already ends with (OpenAI's ``"v1/"``): dropped from a
    path that repeats it (``"/v1/models"`` -> ``"models"``)."""
    response_types: tuple[type, ...] = (dict, list)
    """What a 2xx JSON body may be; anything else is malformed."""
    batch_input_field = "input"
    """The field of a batchable request that holds its inputs (TEI's ``"inputs"``)."""
    body_params: Mapping[str, frozenset[str]] = {}
    """The parameters the API documents, by operation (``"chat"``,
    ``"completion"``, ``"embeddings"``): the keywords ``chat()``,
    ``completions()`` and ``embeddings()`` accept besides their own (any other
    is refused; ``extra_body`` sends a field as it is).  An operation not
    listed is not checked."""

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self.name = spec.name
        # what build_request derives the same way every time, by what it derives
        # from: an endpoint's path, and the headers that hold no key (never a key:
        # a provider is shared by every client of its class, for the process's life)
        self._paths: dict[str, str] = {}
        self._headers: dict[bool, dict[str, str]] = {}

    # ------------------------------------------------------------ requests

    def normalize_base_url(self, raw: str) -> str:
        """The base URL as configured (metadata, environment, attribute) -> as used."""
        return raw

    def request_model(self, endpoint: str, data: Any) -> str | None:
        """The model a request is for (stats per model, batch grouping)."""
        return data.get("model") if isinstance(data, (dict, Mapping)) else None

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def endpoint_path(self, endpoint: str) -> str:
        """The path below the base URL, however the caller spelled it
        (slashes around it, a prefix the base URL holds, no prefix at all)."""
        path = endpoint.strip().strip("/")
        for prefix in self.base_url_prefixes:
            if path.startswith(prefix):
                path = path[len(prefix) :]
        if self.path_prefixes and path and not f"{path}/".startswith(self.path_prefixes):
            path = self.path_prefixes[0] + path
        return path

    def method_for(self, path: str, data: Any) -> str:
        return "GET" if data is None and path.split("/", 1)[0] in self.get_endpoints else "POST"

    def prepare(self, endpoint: str, data: Any, stream: bool) -> tuple[str, Any]:
        """``(endpoint, data)`` as they are sent, from the request's own: where
        a provider moves or adds fields (the model into the path, an explicit
        ``"stream"``, fields the client keeps to itself).  Unchanged by default."""
        return endpoint, data

    def build_request(
        self,
        endpoint: str,
        data: Mapping[str, Any] | None,
        *,
        api_key: str | None,
        base_url: str,
        timeout: float | None,
        stream: bool = False,
        request_id: str | None = None,
        extra_headers: Sequence[tuple[str, str | None]] = (),
        extra_query: Sequence[tuple[str, Any]] = (),
    ) -> HttpRequest:
        """The HTTP request for ``data`` to ``endpoint``; a call's
        ``extra_headers`` go on last (replacing any of the same name, in any
        case; a None value removes one) and ``extra_query`` into the URL."""
        endpoint, data = self.prepare(endpoint, data, stream)
        path = self._paths.get(endpoint)
        if path is None:
            path = self.endpoint_path(endpoint)
            _remember(self._paths, endpoint, path)
        method = self.method_for(path, data)
        common = self._headers.get(stream)
        if common is None:
            common = self._headers[stream] = self._common_headers(stream)
        headers = common.copy()
        auth = self.auth_headers(api_key)
        headers.update(auth)
        secret = _lowered(tuple(auth))
        if request_id:
            headers["X-Client-Request-Id"] = request_id
        body = None
        if method != "GET":
            headers["Content-Type"] = JSON_TYPE
            body = json_body(data if data is not None else {}, self.name)
        url = (
            endpoint
            if endpoint.startswith(("http://", "https://"))
            else f"{base_url.rstrip('/')}/{path}"
        )
        if extra_headers:
            headers = with_headers(headers, extra_headers)
        if extra_query:
            url = with_query(url, extra_query)
        if extra_headers:
            secret = secret | frozenset(name.lower() for name, _ in extra_headers)
        return HttpRequest(method, url, headers, body, timeout, stream, secret_headers=secret)

    def _common_headers(self, stream: bool) -> dict[str, str]:
        """The headers every request (a stream's, or not) carries, whatever its key."""
        headers = {
            "Accept": STREAM_TYPES[self.stream_format] if stream else JSON_TYPE,
            "User-Agent": USER_AGENT,
        }
        headers.update(self.spec.extra_headers)
        return headers

    # ----------------------------------------------------------- responses

    def parse_response(self, endpoint: str, response: HttpResponse) -> Any:
        result = response.json()
        if not isinstance(result, self.response_types):
            raise MalformedResponseError(
                f"expected a JSON object from {self.endpoint_path(endpoint)}, got {type(result).__name__}",
                provider=self.name,
                status=response.status,
            )
        return result

    def answer_for_status(self, endpoint: str, response: HttpResponse) -> Any:
        """The result of a non-2xx response that answers the question asked
        (a readiness probe's 503 means "not ready", not "the server failed"),
        or None when the status is a failure, for :meth:`error_for`.

        An answer is the request's result: not retried, neither a success nor
        a failure for the breaker.  Not asked of streams.  None for every
        status by default."""
        return None

    def error_for(self, response: HttpResponse, *, wall_now: float, attempt: int) -> ApiError:
        return classify_status(
            response.status,
            response.headers,
            response.body,
            wall_now=wall_now,
            provider=self.name,
            attempt=attempt,
        )

    def rate_limit_hints(self, headers: Mapping[str, str]) -> dict[str, Any] | None:
        """What the provider says of the key's remaining quota, if it says:
        ``{"requests_remaining", "tokens_remaining", "requests_reset", "tokens_reset"}``
        (counts, and seconds until the window resets; absent values left out)."""
        return None

    def usage(self, result: Any) -> tuple[int, int]:
        """(input tokens, output tokens) as the provider reported them."""
        usage = result.get("usage") if isinstance(result, dict) else None
        if not isinstance(usage, dict):
            return 0, 0
        tokens_in = usage.get("prompt_tokens") or usage.get("input_tokens") or 0
        tokens_out = usage.get("completion_tokens") or usage.get("output_tokens") or 0
        return int(tokens_in), int(tokens_out)

    def response_info(self, result: Any) -> tuple[str | None, str | None, tuple[str, ...]]:
        """(the model that answered, the answer's id, its finish reasons in
        :func:`finish_reason`'s words) as ``result`` gives them; None and
        ``()`` where it does not.  Read for observability only, never an
        error: OpenAI's ``model``/``id``/``choices[].finish_reason``,
        Anthropic's ``stop_reason``, Gemini's ``modelVersion``/``responseId``/
        ``candidates[].finishReason``, Ollama's ``done_reason``, TGI's
        ``details.finish_reason``."""
        if not isinstance(result, dict):
            return None, None, ()
        model = result.get("model") or result.get("modelVersion")
        answer_id = result.get("id") or result.get("responseId")
        reasons: list[str] = []
        for choices in (result.get("choices"), result.get("candidates")):
            if isinstance(choices, list):
                for choice in choices:
                    if isinstance(choice, dict):
                        reason = finish_reason(
                            choice.get("finish_reason") or choice.get("finishReason")
                        )
                        if reason:
                            reasons.append(reason)
        details = result.get("details")
        for raw in (
            result.get("stop_reason"),
            result.get("done_reason"),
            details.get("finish_reason") if isinstance(details, dict) else None,
        ):
            reason = finish_reason(raw)
            if reason:
                reasons.append(reason)
        return (
            model if isinstance(model, str) else None,
            answer_id if isinstance(answer_id, str) else None,
            tuple(reasons),
        )

    # ------------------------------------------------------------- streams

    def parse_stream_event(self, event: Event) -> tuple[Any, bool]:
        """``(chunk or None, done)``: a chunk to hand over (None: nothing),
        and whether the stream is complete after it."""
        raise NotImplementedError(f"{self.name} does not stream")

    def stream_delta(self, chunk: Any) -> StreamDelta:
        """What ``chunk`` (from :meth:`parse_stream_event`) adds to the reply."""
        raise NotImplementedError(f"{self.name} does not stream")

    def stream_json(self, text: str | bytes) -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise MalformedResponseError(
                f"stream sent a chunk that is not JSON: {text[:80]!r}", provider=self.name
            ) from exc

    # ---------------------------------------------------------- operations

    def unsupported(self, operation: str) -> InvalidInputError:
        return InvalidInputError(
            f"the {self.name} backend has no {operation} operation", provider=self.name
        )

    def chat_request(
        self, model: str, messages: list[Any], params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        raise self.unsupported("chat")

    def completion_request(
        self, model: str, prompt: Any, params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        raise self.unsupported("completions")

    def embeddings_request(
        self, model: str, inputs: Any, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        raise self.unsupported("embeddings")

    def models_request(self) -> tuple[str, dict[str, Any] | None]:
        raise self.unsupported("models")

    def reply_text(self, result: Any) -> str:
        """The text of a chat (or completion) response."""
        raise self.unsupported("chat")

    def embedding_vectors(self, result: Any) -> list[list[float]]:
        """The vectors of an embeddings response, in input order."""
        raise self.unsupported("embeddings")

    def models_from(self, result: Any) -> list[Any]:
        return result.get("data", []) if isinstance(result, dict) else list(result)

    # ------------------------------------------------------------ batching

    def batch_inputs(self, endpoint: str, data: Any) -> list[Any] | None:
        """The inputs of a batchable request, or None when it is not one."""
        return None

    def batch_endpoint(self, endpoint: str, template: Mapping[str, Any]) -> str:
        """Where a batch of requests to ``endpoint`` goes (the same place, by default)."""
        return endpoint

    def batch_template(self, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
        """What alike requests share: their data without the inputs."""
        return {k: v for k, v in data.items() if k != self.batch_input_field}

    def batch_limits(self, model: str | None) -> BatchLimits:
        return NO_LIMITS

    def batch_payload(self, template: Mapping[str, Any], inputs: list[Any]) -> dict[str, Any]:
        return {**template, self.batch_input_field: inputs}

    def split_batch_result(
        self, result: Any, counts: list[int], weights: list[int] | None = None
    ) -> list[Any]:
        """One response of the provider's own shape per member."""
        raise NotImplementedError(f"{self.name} does not batch")

    def split_positional(self, items: Any, counts: list[int], what: str) -> list[list[Any]]:
        """``items`` in input order, cut into the members' runs."""
        if not isinstance(items, list) or len(items) != sum(counts):
            got = len(items) if isinstance(items, list) else type(items).__name__
            raise MalformedResponseError(
                f"batched {what}: expected {sum(counts)} results, got {got}", provider=self.name
            )
        out, start = [], 0
        for count in counts:
            out.append(items[start : start + count])
            start += count
        return out

    def split_indexed(self, items: Any, counts: list[int]) -> list[list[Any]]:
        """Items carrying an ``index``, each member's re-indexed from 0."""
        if not isinstance(items, list):
            raise MalformedResponseError(
                "batched response has no list of results", provider=self.name
            )
        return split_by_index(items, counts)
