"""The Gemini API (Generative Language API, ``v1beta``) wire format.

Endpoints (below ``https://generativelanguage.googleapis.com/v1beta``)::

    POST models/{model}:generateContent
    POST models/{model}:streamGenerateContent?alt=sse   SSE, no [DONE]
    POST models/{model}:countTokens
    POST models/{model}:embedContent
    POST models/{model}:batchEmbedContents              at most 100 requests
    GET  models, models/{model}

The key goes in the ``x-goog-api-key`` header, never in the URL.

An operation's data carries its ``model`` (so that statistics and batching
see it, as for every other provider); the request puts it in the path and
leaves it out of the body.  An endpoint may be a bare method name
(``"generateContent"``, with ``data["model"]``) or a resource path
(``"models/gemini-2.5-flash:generateContent"``, ``"/v1beta/models"``).

A stream is over when every candidate of a chunk carries a
``finishReason`` (or the prompt was blocked); a stream that closes before
that was cut.  Each chunk is a whole ``GenerateContentResponse``: its
first candidate's text parts (thoughts left out) and function calls, its
``finishReason`` and its ``usageMetadata`` (cumulative) are what it adds
(:meth:`GeminiWire.stream_delta`).  Errors are ``{"error": {"code", "message", "status",
"details"}}``; a 429's wait is in ``details[google.rpc.RetryInfo].retryDelay``
(``"30s"``), and a key Google does not know is a 400 whose ``ErrorInfo``
reason is ``API_KEY_INVALID`` (an authentication error here).

Embeddings always go as ``batchEmbedContents`` (one text or a list: the
answer has one shape, ``{"embeddings": [{"values": [...]}, ...]}``), so the
batch lane can coalesce single-text callers into one call of up to 100.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from ..resilience.batching import BatchLimits
from ..resilience.errors import (
    ApiError,
    AuthenticationError,
    InvalidInputError,
    MalformedResponseError,
    classify_status,
)
from ..transport.base import HttpResponse
from .base import (
    EMPTY_DELTA,
    Event,
    ProviderSpec,
    StreamDelta,
    ToolCallDelta,
    Wire,
    body_json,
    finish_reason,
    retyped,
    sse_event,
    token_count,
)
from .gemini_content import (
    EMBED_PARAMS,
    GENERATION_PARAMS,
    embed_params,
    generation_fields,
    image_part,
    to_contents,
)
from .openai import arguments_text

__all__ = ["GEMINI", "GEMINI_EMBEDDING_LIMITS", "GeminiWire", "image_part", "model_resource"]

GEMINI = ProviderSpec(
    name="gemini",
    default_base_url="https://generativelanguage.googleapis.com/v1beta",
    key_metadata=("google_api_key", "gemini_api_key", "api_key"),
    key_env=("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    base_url_metadata=("gemini_api_base", "gemini_base_url", "base_url", "api_base"),
    base_url_env=("GEMINI_BASE_URL",),
    embedding_models=("gemini-embedding-001", "text-embedding-004", "embedding-001"),
    simulator_path="/v1beta",
    default_chat_model="gemini-2.5-flash",
    default_embedding_model="gemini-embedding-001",
)

#: batchEmbedContents takes at most 100 requests; gemini-embedding-001 and
#: text-embedding-004 read at most 2,048 tokens of one input.
GEMINI_EMBEDDING_LIMITS = BatchLimits(max_inputs=100, max_tokens_per_input=2048)
MODELS_PAGE_SIZE = 1000  # the largest page models.list gives
METHODS = frozenset(
    {
        "generateContent",
        "streamGenerateContent",
        "countTokens",
        "embedContent",
        "batchEmbedContents",
    }
)
EMBED_BATCH = "batchEmbedContents"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_KEY_REASONS = frozenset({"API_KEY_INVALID"})
_UNSPECIFIED = "FINISH_REASON_UNSPECIFIED"
_NO_REASONS = frozenset({_UNSPECIFIED, "BLOCK_REASON_UNSPECIFIED"})


def model_resource(model: str) -> str:
    """``"gemini-2.5-flash"`` -> ``"models/gemini-2.5-flash"``; a resource
    name (``models/...``, ``tunedModels/...``) is kept."""
    model = model.strip()
    return model if "/" in model else f"models/{model}"


class GeminiWire(Wire):
    """Maps operations to the Gemini API's HTTP and back."""

    base_url_prefixes = ("v1beta/", "v1/")
    body_params = {
        "chat": GENERATION_PARAMS,
        "completion": GENERATION_PARAMS,
        "embeddings": EMBED_PARAMS,
    }

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"x-goog-api-key": api_key} if api_key else {}

    # ------------------------------------------------------------ requests

    def endpoint_path(self, endpoint: str) -> str:
        """``"/v1beta/models"`` -> ``"models"``; ``":generateContent"`` -> ``"generateContent"``."""
        return super().endpoint_path(endpoint).lstrip(":")

    def method_for(self, path: str, data: Any) -> str:
        """GET for resources (``models``, ``models/x``) read without data; POST for ``...:method``."""
        return "GET" if data is None and ":" not in path.split("?", 1)[0] else "POST"

    def operation(self, endpoint: str) -> str:
        """The API method an endpoint names (``"models/x:embedContent"`` -> ``"embedContent"``)."""
        path = self.endpoint_path(endpoint).split("?", 1)[0]
        return path.rpartition(":")[2] if ":" in path else path

    def resolve(self, endpoint: str, data: Any, stream: bool) -> tuple[str, Any]:
        """``(path with query, body)``: the model moves from the data into the path."""
        path, _, query = self.endpoint_path(endpoint).partition("?")
        body = data
        if isinstance(data, Mapping) and "model" in data and (path in METHODS or ":" in path):
            body = {k: v for k, v in data.items() if k != "model"}
        if path in METHODS:
            model = data.get("model") if isinstance(data, Mapping) else None
            if not isinstance(model, str) or not model.strip():
                raise InvalidInputError(
                    f"endpoint {path!r} needs data['model'] (e.g. 'gemini-2.5-flash') to call models/{{model}}:{path}",
                    provider=self.name,
                )
            path = f"{model_resource(model)}:{path}"
        resource, _, method = path.rpartition(":")
        if stream and method == "generateContent":
            path, method = f"{resource}:streamGenerateContent", "streamGenerateContent"
        if method == "streamGenerateContent" and stream and "alt=" not in query:
            query = f"{query}&alt=sse" if query else "alt=sse"
        return (f"{path}?{query}" if query else path), body

    def prepare(self, endpoint: str, data: Any, stream: bool) -> tuple[str, Any]:
        if endpoint.startswith(("http://", "https://")):
            return endpoint, data
        return self.resolve(endpoint, data, stream)

    # ----------------------------------------------------------- responses

    def error_for(self, response: HttpResponse, *, wall_now: float, attempt: int) -> ApiError:
        return self.error_from(
            response.status, response.headers, response.body, wall_now=wall_now, attempt=attempt
        )

    def error_from(
        self, status: int, headers: Any, body: Any, *, wall_now: float, attempt: int | None = None
    ) -> ApiError:
        """The typed error for Google's ``{"error": {"code", "message", "status", "details"}}``."""
        error = _error_object(body)
        state, message = error.get("status"), error.get("message")
        text = (
            f"{state}: {message}" if isinstance(state, str) and isinstance(message, str) else None
        )
        err = classify_status(
            status,
            headers,
            body,
            wall_now=wall_now,
            provider=self.name,
            attempt=attempt,
            message=text,
        )
        details = [d for d in error.get("details") or [] if isinstance(d, dict)]
        if err.retry_after is None:
            err.retry_after = _retry_delay(details)
        if any(d.get("@type") == _ERROR_INFO and d.get("reason") in _KEY_REASONS for d in details):
            err = retyped(err, AuthenticationError)
        return err

    def usage(self, result: Any) -> tuple[int, int]:
        """``usageMetadata``: prompt tokens in; candidates' (and thinking) tokens out."""
        meta = result.get("usageMetadata") if isinstance(result, dict) else None
        if not isinstance(meta, dict):
            return 0, 0
        out = token_count(meta.get("candidatesTokenCount")) + token_count(
            meta.get("thoughtsTokenCount")
        )
        return token_count(meta.get("promptTokenCount")), out

    # ------------------------------------------------------------- streams

    def parse_stream_event(self, raw: Event) -> tuple[Any, bool]:
        event = sse_event(raw)
        data = event.data.strip()
        if not data:
            return None, False
        chunk = self.stream_json(data)
        if not isinstance(chunk, dict):
            raise MalformedResponseError(
                f"stream sent {type(chunk).__name__}, expected a JSON object", provider=self.name
            )
        if "error" in chunk and "candidates" not in chunk:
            code = _error_object(chunk).get("code")
            raise self.error_from(
                code if isinstance(code, int) and code >= 400 else 500, None, chunk, wall_now=0.0
            )
        return chunk, _finished(chunk)

    def stream_delta(self, chunk: Any) -> StreamDelta:
        """One ``GenerateContentResponse`` chunk in common terms: the first
        candidate's text parts (``"thought": true`` parts left out), its
        ``functionCall`` parts as whole tool calls (``index`` their position
        among this chunk's calls, ``arguments`` the JSON of ``args``), its
        ``finishReason`` (or the prompt's ``blockReason``), and
        ``usageMetadata`` read as :meth:`usage` reads it."""
        if not isinstance(chunk, dict):
            return EMPTY_DELTA
        candidate = _reply_candidate(chunk.get("candidates"))
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        parts = (
            [part for part in parts if isinstance(part, dict)] if isinstance(parts, list) else []
        )
        feedback = chunk.get("promptFeedback")
        reason = candidate.get("finishReason")
        if reason is None and isinstance(feedback, dict):
            reason = feedback.get("blockReason")
        return StreamDelta(
            text="".join(
                p["text"]
                for p in parts
                if isinstance(p.get("text"), str) and p.get("thought") is not True
            ),
            tool_calls=_function_calls(parts),
            finish_reason=None
            if not isinstance(reason, str) or reason in _NO_REASONS
            else finish_reason(reason),
            usage=self.usage(chunk) if isinstance(chunk.get("usageMetadata"), dict) else None,
        )

    # ---------------------------------------------------------- operations

    def chat_request(
        self, model: str, messages: list[Any], params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        contents, system = to_contents(messages)
        data: dict[str, Any] = {"model": model, "contents": contents}
        if system:
            data["systemInstruction"] = {"parts": system}
        data.update(generation_fields(params))
        return ("streamGenerateContent" if stream else "generateContent"), data

    def completion_request(
        self, model: str, prompt: Any, params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        """A prompt is one user turn of ``generateContent`` (Gemini has no completions endpoint)."""
        if not isinstance(prompt, str) or not prompt:
            raise InvalidInputError(
                "gemini completes one prompt at a time: give a non-empty string", provider=self.name
            )
        return self.chat_request(model, [{"role": "user", "content": prompt}], params, stream)

    def count_tokens_request(self, model: str, messages: list[Any]) -> tuple[str, dict[str, Any]]:
        contents, system = to_contents(messages)
        if not system:
            return "countTokens", {"model": model, "contents": contents}
        inner = {
            "model": model_resource(model),
            "contents": contents,
            "systemInstruction": {"parts": system},
        }
        return "countTokens", {"model": model, "generateContentRequest": inner}

    def embed_content_request(
        self, model: str, text: str, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """One text through ``embedContent`` (answer: ``{"embedding": {"values"}}``); never batched."""
        return "embedContent", {
            "model": model,
            **embed_params(params),
            "content": _text_content(text),
        }

    def embeddings_request(
        self, model: str, inputs: Any, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        texts = (
            [inputs]
            if isinstance(inputs, str)
            else list(inputs)
            if isinstance(inputs, (list, tuple))
            else None
        )
        if not texts or not all(isinstance(t, str) and t for t in texts):
            raise InvalidInputError(
                "gemini embeds text: give a non-empty string or a list of them", provider=self.name
            )
        extra = {"model": model_resource(model), **embed_params(params)}
        return EMBED_BATCH, {
            "model": model,
            "requests": [{**extra, "content": _text_content(t)} for t in texts],
        }

    def models_request(self, page_token: str | None = None) -> tuple[str, dict[str, Any] | None]:
        query = {"pageSize": MODELS_PAGE_SIZE, **({"pageToken": page_token} if page_token else {})}
        return f"models?{urlencode(query)}", None

    def model_request(self, model: str) -> tuple[str, dict[str, Any] | None]:
        return model_resource(model), None

    def models_from(self, result: Any) -> list[Any]:
        return list(result.get("models", [])) if isinstance(result, dict) else []

    def reply_text(self, result: Any) -> str:
        """The text parts of the first candidate."""
        candidates = result.get("candidates") if isinstance(result, dict) else None
        if not candidates:
            return ""
        parts = (candidates[0].get("content") or {}).get("parts") or []
        return "".join(part.get("text", "") for part in parts if isinstance(part, dict))

    def embedding_vectors(self, result: Any) -> list[list[float]]:
        if isinstance(result, dict) and isinstance(result.get("embeddings"), list):
            return [item["values"] for item in result["embeddings"]]
        if isinstance(result, dict) and isinstance(result.get("embedding"), dict):
            return [result["embedding"]["values"]]
        raise MalformedResponseError(
            "embeddings response has neither 'embeddings' nor 'embedding'", provider=self.name
        )

    # ------------------------------------------------------------ batching

    def batch_inputs(self, endpoint: str, data: Any) -> list[Any] | None:
        """The texts of a ``batchEmbedContents`` whose requests differ only in
        their text (one text part each); anything else goes as it is."""
        if self.operation(endpoint) != EMBED_BATCH or not isinstance(data, Mapping):
            return None
        requests = data.get("requests")
        if (
            not isinstance(requests, list)
            or not requests
            or not all(isinstance(r, Mapping) for r in requests)
        ):
            return None
        shared = _without_content(requests[0])
        texts = [_single_text(r) for r in requests]
        if any(t is None for t in texts) or any(_without_content(r) != shared for r in requests):
            return None
        return texts

    def batch_template(self, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
        shared = {k: v for k, v in data.items() if k != "requests"}
        return {**shared, "requests": [_without_content(data["requests"][0])]}

    def batch_limits(self, model: str | None) -> BatchLimits:
        return GEMINI_EMBEDDING_LIMITS

    def batch_payload(self, template: Mapping[str, Any], inputs: list[Any]) -> dict[str, Any]:
        request = template["requests"][0]
        return {**template, "requests": [{**request, "content": _text_content(t)} for t in inputs]}

    def split_batch_result(
        self, result: Any, counts: list[int], weights: list[int] | None = None
    ) -> list[dict[str, Any]]:
        """Each member's ``{"embeddings": [...]}``, in the order its texts were sent."""
        if not isinstance(result, dict):
            raise MalformedResponseError(
                "batchEmbedContents response is not a JSON object", provider=self.name
            )
        parts = self.split_positional(result.get("embeddings"), counts, "embeddings")
        rest = {k: v for k, v in result.items() if k != "embeddings"}
        return [{**rest, "embeddings": part} for part in parts]


# ---------------------------------------------------------------- helpers


def _text_content(text: str) -> dict[str, Any]:
    return {"parts": [{"text": text}]}


def _without_content(request: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != "content"}


def _single_text(request: Mapping[str, Any]) -> str | None:
    content = request.get("content")
    parts = content.get("parts") if isinstance(content, Mapping) else None
    if (
        not isinstance(parts, list)
        or len(parts) != 1
        or not isinstance(parts[0], Mapping)
        or set(parts[0]) != {"text"}
    ):
        return None
    text = parts[0]["text"]
    return text if isinstance(text, str) and text else None


def _reply_candidate(candidates: Any) -> dict[str, Any]:
    """The candidate of index 0 (or without one); ``{}`` when there is none."""
    if not isinstance(candidates, list):
        return {}
    return next((c for c in candidates if isinstance(c, dict) and c.get("index", 0) == 0), {})


def _function_calls(parts: list[dict[str, Any]]) -> tuple[ToolCallDelta, ...]:
    found = [p.get("functionCall", p.get("function_call")) for p in parts]
    calls: list[dict[str, Any]] = [call for call in found if isinstance(call, dict)]
    return tuple(
        ToolCallDelta(
            index=position,
            id=call["id"] if isinstance(call.get("id"), str) and call["id"] else None,
            name=call["name"] if isinstance(call.get("name"), str) and call["name"] else None,
            arguments=arguments_text(call.get("args") if call.get("args") is not None else {}),
        )
        for position, call in enumerate(calls)
    )


def _finished(chunk: dict[str, Any]) -> bool:
    """Every candidate has a finishReason, or the prompt was blocked (no candidates)."""
    candidates = chunk.get("candidates")
    if isinstance(candidates, list) and candidates:
        return all(
            isinstance(c, dict) and c.get("finishReason") not in (None, "", _UNSPECIFIED)
            for c in candidates
        )
    feedback = chunk.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def _error_object(body: Any) -> dict[str, Any]:
    """The ``error`` object of a Google error body (also inside a one-item list)."""
    body = body_json(body)
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """``RetryInfo.retryDelay`` in seconds: ``"30s"``, ``"1.5s"`` or ``{"seconds", "nanos"}``."""
    for detail in details:
        if detail.get("@type") != _RETRY_INFO:
            continue
        delay = detail.get("retryDelay")
        try:
            if isinstance(delay, str) and delay.strip().endswith("s"):
                seconds = float(delay.strip()[:-1])
            elif isinstance(delay, dict):
                seconds = float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
            else:
                continue
        except (TypeError, ValueError):
            continue
        if seconds >= 0 and seconds != float("inf"):
            return seconds
    return None
