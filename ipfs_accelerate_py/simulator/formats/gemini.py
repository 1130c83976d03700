"""Gemini's wire format (Generative Language API, ``v1beta``).

Routes::

    POST /v1beta/models/{model}:generateContent
    POST /v1beta/models/{model}:streamGenerateContent   ?alt=sse: SSE (no [DONE]); else a JSON array
    POST /v1beta/models/{model}:countTokens
    POST /v1beta/models/{model}:embedContent
    POST /v1beta/models/{model}:batchEmbedContents      at most 100 requests
    GET  /v1beta/models                                 pageSize (default 50, max 1000), pageToken
    GET  /v1beta/models/{model}

The key is the ``x-goog-api-key`` header (or ``?key=``, which Google also
takes).  Errors are ``{"error": {"code", "message", "status"}}``, with
``details`` where Google sends them: a 429 carries ``google.rpc.QuotaFailure``
and ``google.rpc.RetryInfo`` (``retryDelay: "2s"``); an unknown key is a 400
``INVALID_ARGUMENT`` with ``ErrorInfo`` reason ``API_KEY_INVALID``, a missing
one a 403 ``PERMISSION_DENIED`` (Gemini answers no 401 to API keys).

Content is the simulator's usual: the reply is ``"Simulated reply to: "`` and
the first 60 characters of the last user turn's text, cut to ``4 *
maxOutputTokens`` characters (``finishReason: "MAX_TOKENS"``); tokens are
``ceil(chars / 4)`` per text part (258 per inline image, as Gemini counts
one).  A stream is the reply a few words a chunk; its last chunk carries the
``finishReason`` and the full ``usageMetadata``.  An embedding is
``embedding_for(text, outputDimensionality or scenario.embedding_dimensions)``;
Gemini's embeddings answers report no usage, so they add no tokens to the
counters (they do cost tokens against a tokens-per-minute limit).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..openai_wire import (
    CHARS_PER_TOKEN,
    REPLY_PREFIX,
    REPLY_QUOTE_CHARS,
    embedding_for,
    estimate_tokens,
    reply_pieces,
)
from ..wireformat import (
    JSON_ARRAY,
    SSE,
    JsonObject,
    Params,
    Prepared,
    Route,
    WireError,
    WireFormat,
    first_key,
    fixed_answer,
    header_key,
    query_key,
)

__all__ = ["FORMAT", "MAX_BATCH_REQUESTS", "error_body"]

PREFIX = "/v1beta"
MAX_BATCH_REQUESTS = 100
MAX_DIMENSIONS = 3072
IMAGE_TOKENS = 258
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
INPUT_TOKEN_LIMIT = 1_048_576
OUTPUT_TOKEN_LIMIT = 65_536
EMBEDDING_INPUT_LIMIT = 2048

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
TASK_TYPES = frozenset(
    {
        "TASK_TYPE_UNSPECIFIED",
        "RETRIEVAL_QUERY",
        "RETRIEVAL_DOCUMENT",
        "SEMANTIC_SIMILARITY",
        "CLASSIFICATION",
        "CLUSTERING",
        "QUESTION_ANSWERING",
        "FACT_VERIFICATION",
        "CODE_RETRIEVAL_QUERY",
    }
)
_REQUEST_FIELDS = frozenset(
    {
        "model",
        "contents",
        "systemInstruction",
        "system_instruction",
        "generationConfig",
        "generation_config",
        "safetySettings",
        "safety_settings",
        "tools",
        "toolConfig",
        "tool_config",
        "cachedContent",
        "cached_content",
    }
)
_CONFIG_FIELDS = frozenset(
    {
        "temperature",
        "topP",
        "top_p",
        "topK",
        "top_k",
        "candidateCount",
        "candidate_count",
        "maxOutputTokens",
        "max_output_tokens",
        "stopSequences",
        "stop_sequences",
        "presencePenalty",
        "presence_penalty",
        "frequencyPenalty",
        "frequency_penalty",
        "seed",
        "responseMimeType",
        "response_mime_type",
        "responseSchema",
        "response_schema",
        "responseJsonSchema",
        "responseLogprobs",
        "logprobs",
        "thinkingConfig",
        "thinking_config",
        "responseModalities",
        "response_modalities",
        "speechConfig",
        "mediaResolution",
    }
)
_EMBED_FIELDS = frozenset(
    {
        "model",
        "content",
        "taskType",
        "task_type",
        "title",
        "outputDimensionality",
        "output_dimensionality",
    }
)
_QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_requests"


# -- errors -------------------------------------------------------------------------


def gemini_error(status: int, message: str, *details: JsonObject) -> WireError:
    """A :class:`WireError` that renders with ``details``."""
    return WireError(status, message, details=list(details))


def error_body(exc: WireError) -> JsonObject:
    """Google's ``{"error": {"code", "message", "status", "details"?}}``."""
    status = STATUS_NAMES.get(
        exc.status, "INTERNAL" if exc.status >= 500 else "FAILED_PRECONDITION"
    )
    error: JsonObject = {"code": exc.status, "message": exc.message, "status": status}
    if exc.details:
        error["details"] = exc.details
    return {"error": error}


def auth_error(key: str | None) -> WireError:
    if key is None:
        return gemini_error(
            403,
            "Method doesn't allow unregistered callers (callers without established "
            "identity). Please use API Key or other form of API consumer identity to "
            "call this API.",
        )
    return gemini_error(
        400,
        "API key not valid. Please pass a valid API key.",
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        },
    )


def rate_limit_error(exceeded: str, retry_after: str) -> WireError:
    quota = (
        "GenerateRequestsPerMinutePerProjectPerModel"
        if exceeded == "requests"
        else "GenerateContentInputTokensPerModelPerMinute"
    )
    return gemini_error(
        429,
        f"You exceeded your current quota ({exceeded} per minute, simulated). "
        f"Please retry in {retry_after}s.",
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaMetric": _QUOTA_METRIC, "quotaId": quota}],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after}s"},
    )


def model_not_found(model: str) -> WireError:
    return gemini_error(
        404,
        f"models/{model} is not found for API version v1beta, or is not supported for "
        "this method. Call ListModels to see the list of available models and their "
        "supported methods.",
    )


def _bad(message: str) -> WireError:
    return gemini_error(400, message)


# -- requests -----------------------------------------------------------------------


def _object(payload: Any, what: str) -> JsonObject:
    if not isinstance(payload, dict):
        raise _bad(f"Invalid JSON payload received. {what} must be a JSON object.")
    return payload


def _unknown(payload: JsonObject, allowed: frozenset[str], where: str = "") -> None:
    for name in payload:
        if name not in allowed:
            raise _bad(
                f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.'
            )


def _part_tokens(part: Any, where: str) -> tuple[str, int]:
    """``(text, tokens)`` of one part; inline data is checked to be base64."""
    if not isinstance(part, dict) or not part:
        raise _bad(f"{where} must be a non-empty object.")
    if "text" in part:
        if not isinstance(part["text"], str):
            raise _bad(f"Invalid value at '{where}.text' (TYPE_STRING).")
        return part["text"], estimate_tokens(part["text"])
    blob = part.get("inline_data", part.get("inlineData"))
    if blob is not None:
        mime = blob.get("mime_type", blob.get("mimeType")) if isinstance(blob, dict) else None
        data = blob.get("data") if isinstance(blob, dict) else None
        if not isinstance(mime, str) or not mime or not isinstance(data, str):
            raise _bad(f"{where}.inline_data needs 'mime_type' and base64 'data'.")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(
                f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed "
                f'for "{data[:20]}"'
            ) from None
        return "", IMAGE_TOKENS
    return "", 0


def _content(content: Any, where: str, roles: tuple[str, ...]) -> tuple[str, str, int]:
    """``(role, text, tokens)`` of one Content."""
    if not isinstance(content, dict):
        raise _bad(f"{where} must be an object with 'parts'.")
    role = content.get("role", "user")
    if role not in roles:
        raise _bad(f"Please use a valid role: {', '.join(roles)}.")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise _bad(f"{where}.parts must not be empty.")
    texts, tokens = [], 0
    for j, part in enumerate(parts):
        text, count = _part_tokens(part, f"{where}.parts[{j}]")
        texts.append(text)
        tokens += count
    return role, "".join(texts), tokens


def _prompt(payload: JsonObject) -> tuple[str, int]:
    """The last user turn's text and the prompt's tokens (system instruction included)."""
    contents = payload.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _bad("* GenerateContentRequest.contents: contents is not specified")
    last_user, tokens = None, 0
    for i, content in enumerate(contents):
        role, text, count = _content(content, f"contents[{i}]", ("user", "model", "function"))
        tokens += count
        if role == "user":
            last_user = text
    system = payload.get("systemInstruction", payload.get("system_instruction"))
    if system is not None:
        tokens += _content(system, "system_instruction", ("user", "system", "model"))[2]
    return last_user or "", tokens


def _max_output(config: JsonObject) -> int | None:
    value = config.get("maxOutputTokens", config.get("max_output_tokens"))
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _bad(
            f"Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), {value!r}"
        )
    return value


def _config(payload: JsonObject) -> JsonObject:
    config = payload.get("generationConfig", payload.get("generation_config")) or {}
    config = _object(config, "generationConfig")
    _unknown(config, _CONFIG_FIELDS, " at 'generation_config'")
    temperature = config.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2
    ):
        raise _bad(
            "* GenerateContentRequest.generation_config.temperature: must be in the range [0.0, 2.0]"
        )
    return config


# -- generateContent ----------------------------------------------------------------


def _usage(prompt: int, reply: int, final: bool = True) -> JsonObject:
    if not final:
        return {"promptTokenCount": prompt, "totalTokenCount": prompt}
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": reply,
        "totalTokenCount": prompt + reply,
    }


def _generate(payload: Any, params: Params, stream: bool) -> Prepared:
    payload = _object(payload, "The request body")
    _unknown(payload, _REQUEST_FIELDS)
    model = params["model"]
    text, prompt_tokens = _prompt(payload)
    limit = _max_output(_config(payload))
    reply, finish = REPLY_PREFIX + text[:REPLY_QUOTE_CHARS], "STOP"
    if limit is not None and estimate_tokens(reply) > limit:
        reply, finish = reply[: limit * CHARS_PER_TOKEN], "MAX_TOKENS"
    reply_tokens = estimate_tokens(reply)

    def candidate(part: str, done: bool) -> JsonObject:
        out = {"content": {"parts": [{"text": part}], "role": "model"}, "index": 0}
        if done:
            out["finishReason"] = finish
        return out

    def body(rid: str, created: int) -> JsonObject:
        return {
            "candidates": [candidate(reply, True)],
            "usageMetadata": _usage(prompt_tokens, reply_tokens),
            "modelVersion": model,
            "responseId": rid,
        }

    def chunks(rid: str, created: int) -> list[Any]:
        pieces = reply_pieces(reply)
        last = len(pieces) - 1
        return [
            {
                "candidates": [candidate(p, i == last)],
                "usageMetadata": _usage(prompt_tokens, reply_tokens, i == last),
                "modelVersion": model,
                "responseId": rid,
            }
            for i, p in enumerate(pieces)
        ]

    framing = SSE if params.query.get("alt") == "sse" else JSON_ARRAY
    return Prepared(
        model=model,
        cost=prompt_tokens + reply_tokens,
        body=body,
        stream=stream,
        chunks=chunks,
        prompt_tokens=prompt_tokens,
        completion_tokens=reply_tokens,
        framing=framing,
    )


def _generate_content(payload: Any, scenario: Any, params: Params) -> Prepared:
    return _generate(payload, params, stream=False)


def _stream_generate_content(payload: Any, scenario: Any, params: Params) -> Prepared:
    return _generate(payload, params, stream=True)


def _count_tokens(payload: Any, scenario: Any, params: Params) -> Prepared:
    payload = _object(payload, "The request body")
    _unknown(payload, frozenset({"contents", "generateContentRequest", "generate_content_request"}))
    inner = payload.get("generateContentRequest", payload.get("generate_content_request"))
    if inner is not None:
        _unknown(
            _object(inner, "generateContentRequest"),
            _REQUEST_FIELDS,
            " at 'generate_content_request'",
        )
        tokens = _prompt(inner)[1]
    else:
        tokens = _prompt(payload)[1]
    return fixed_answer(
        params["model"],
        {
            "totalTokens": tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
        },
    )


# -- embeddings ---------------------------------------------------------------------


def _embed_one(request: Any, where: str, default_dimensions: int) -> tuple[str, int]:
    """``(text, dimensions)`` of one EmbedContentRequest."""
    request = _object(request, where)
    _unknown(request, _EMBED_FIELDS, f" at '{where}'")
    task = request.get("taskType", request.get("task_type"))
    if task is not None and task not in TASK_TYPES:
        raise _bad(
            f"Invalid value at '{where}.task_type' (type.googleapis.com/google.ai.generativelanguage.v1beta."
            f'TaskType), "{task}"'
        )
    text = _content(request.get("content"), f"{where}.content", ("user",))[1]
    if not text:
        raise _bad(f"* {where}.content: must have a text part")
    dims = request.get("outputDimensionality", request.get("output_dimensionality"))
    if dims is None:
        return text, default_dimensions
    if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= MAX_DIMENSIONS:
        raise _bad(f"* {where}.output_dimensionality: must be in 1..{MAX_DIMENSIONS}")
    return text, dims


def _embed_content(payload: Any, scenario: Any, params: Params) -> Prepared:
    text, dims = _embed_one(payload, "EmbedContentRequest", scenario.embedding_dimensions)
    tokens = estimate_tokens(text)
    return Prepared(
        model=params["model"],
        cost=tokens,
        embedding_inputs=1,
        body=lambda rid, created: {"embedding": {"values": embedding_for(text, dims)}},
    )


def _batch_embed_contents(payload: Any, scenario: Any, params: Params) -> Prepared:
    payload = _object(payload, "The request body")
    _unknown(payload, frozenset({"requests", "model"}))
    requests = payload.get("requests")
    if not isinstance(requests, list) or not requests:
        raise _bad("* BatchEmbedContentsRequest.requests: requests is not specified")
    if len(requests) > MAX_BATCH_REQUESTS:
        raise _bad(
            f"* BatchEmbedContentsRequest.requests: at most {MAX_BATCH_REQUESTS} requests can be in one batch"
        )
    model = params["model"]
    items = []
    for i, request in enumerate(requests):
        items.append(
            _embed_one(
                request, f"BatchEmbedContentsRequest.requests[{i}]", scenario.embedding_dimensions
            )
        )
        named = request.get("model")
        if named not in (f"models/{model}", model):
            raise _bad(
                f"* BatchEmbedContentsRequest.requests[{i}].model: the model of each request "
                f"({named!r}) must match models/{model} of the batch"
            )
    tokens = sum(estimate_tokens(text) for text, _ in items)
    return Prepared(
        model=model,
        cost=tokens,
        embedding_inputs=len(items),
        body=lambda rid, created: {
            "embeddings": [{"values": embedding_for(t, d)} for t, d in items]
        },
    )


# -- models -------------------------------------------------------------------------


def model_object(model: str) -> JsonObject:
    embeds = "embedding" in model
    methods = (
        ["embedContent", "batchEmbedContents"] if embeds else ["generateContent", "countTokens"]
    )
    return {
        "name": f"models/{model}",
        "baseModelId": model,
        "version": "001",
        "displayName": model,
        "description": f"{model} (simulated)",
        "inputTokenLimit": EMBEDDING_INPUT_LIMIT if embeds else INPUT_TOKEN_LIMIT,
        "outputTokenLimit": 1 if embeds else OUTPUT_TOKEN_LIMIT,
        "supportedGenerationMethods": methods,
    }


def _page(query: Any) -> tuple[int, int]:
    try:
        size = int(query.get("pageSize", DEFAULT_PAGE_SIZE))
        start = int(query.get("pageToken") or 0)
    except ValueError:
        raise _bad("Invalid pageSize or pageToken.") from None
    if size < 1:
        size = DEFAULT_PAGE_SIZE
    return start, min(size, MAX_PAGE_SIZE)


def _models(payload: Any, scenario: Any, params: Params) -> Prepared:
    start, size = _page(params.query)
    models = list(scenario.models)
    page: JsonObject = {"models": [model_object(m) for m in models[start : start + size]]}
    if start + size < len(models):
        page["nextPageToken"] = str(start + size)
    return fixed_answer(None, page)


def _model(payload: Any, scenario: Any, params: Params) -> Prepared:
    model = params["model"]
    if model not in scenario.models:
        raise model_not_found(model)
    return fixed_answer(model, model_object(model))


FORMAT = WireFormat(
    name="gemini",
    routes=(
        Route("POST", PREFIX + "/models/{model}:generateContent", _generate_content),
        Route("POST", PREFIX + "/models/{model}:streamGenerateContent", _stream_generate_content),
        Route("POST", PREFIX + "/models/{model}:countTokens", _count_tokens),
        Route("POST", PREFIX + "/models/{model}:embedContent", _embed_content),
        Route("POST", PREFIX + "/models/{model}:batchEmbedContents", _batch_embed_contents),
        Route("GET", PREFIX + "/models", _models),
        Route("GET", PREFIX + "/models/{model}", _model),
    ),
    key=first_key(header_key("x-goog-api-key"), query_key("key")),
    error_body=error_body,
    auth_error=auth_error,
    rate_limit_error=rate_limit_error,
    model_not_found=model_not_found,
    framing=SSE,
    malformed_body=b'{"candidates": [{"content": {"parts": [{"text": "cut sh',
)
