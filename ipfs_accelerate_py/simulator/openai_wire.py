"""OpenAI wire format for the simulator: request bodies in, response bodies out.

Pure functions, no I/O.  A parser turns a decoded JSON body into a
:class:`Prepared` answer (or raises :class:`WireError`, which becomes an
OpenAI-shaped error response); the server then writes ``Prepared.body()`` as
JSON or ``Prepared.chunks()`` as server-sent events.

Deterministic content:

* chat and text completions answer ``"Simulated reply to: "`` followed by the
  first 60 characters of the last user message (of the prompt, for
  completions).  ``max_tokens`` shorter than that reply truncates it to
  ``4 * max_tokens`` characters with ``finish_reason`` ``"length"``.
* token counts are ``estimate_tokens(text) = ceil(len(text) / 4)`` summed over
  the message contents (prompt), the reply (completion) or the inputs
  (embeddings).
* an embedding is :func:`embedding_for` of its input text: unit length,
  every component exactly representable as a float32, so the JSON floats and
  the ``encoding_format: "base64"`` bytes decode to the same numbers.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import re
import struct
from typing import Any

from .wireformat import JsonObject, Prepared, WireError, dumps

__all__ = [
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "DEFAULT_MODELS",
    "MAX_EMBEDDING_DIMENSIONS",
    "MAX_EMBEDDING_INPUTS",
    "Prepared",
    "WireError",
    "dumps",
    "embedding_for",
    "error_body",
    "estimate_tokens",
    "parse_chat",
    "parse_completion",
    "parse_embeddings",
    "reply_pieces",
]

DEFAULT_EMBEDDING_DIMENSIONS = 16
MAX_EMBEDDING_DIMENSIONS = 4096
MAX_EMBEDDING_INPUTS = 2048
EMBEDDING_CACHE_SIZE = 2048
REPLY_PREFIX = "Simulated reply to: "
REPLY_QUOTE_CHARS = 60
CHARS_PER_TOKEN = 4
WORDS_PER_CHUNK = 3
MODEL_CREATED = 1_700_000_000
DEFAULT_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-3.5-turbo",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_WORDS = re.compile(r"\S+\s*")
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_quote = json.encoder.encode_basestring
_CHAT_TEMPLATE = (
    '{"id":"chatcmpl-%s","object":"chat.completion","created":%d,"model":%s,'
    '"system_fingerprint":"fp_simulator","choices":[{"index":0,"message":{"role":"assistant",'
    '"content":%s},"logprobs":null,"finish_reason":"%s"}],"usage":{"prompt_tokens":%d,'
    '"completion_tokens":%d,"total_tokens":%d}}'
)
_EMBEDDING_ITEM = '{"object":"embedding","index":%d,"embedding":%s}'
_EMBEDDINGS_TEMPLATE = (
    '{"object":"list","data":[%s],"model":%s,"usage":{"prompt_tokens":%d,"total_tokens":%d}}'
)


def error_type_for(status: int) -> str:
    """OpenAI's ``error.type`` for an HTTP status."""
    if status >= 500:
        return "server_error"
    return _ERROR_TYPES.get(status, "invalid_request_error")


def error_body(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    type: str | None = None,
) -> JsonObject:
    """``{"error": {"message", "type", "param", "code"}}`` as OpenAI sends it."""
    return {
        "error": {
            "message": message,
            "type": type or error_type_for(status),
            "param": param,
            "code": code,
        }
    }


def estimate_tokens(text: str) -> int:
    """Deterministic token estimate: one token per 4 characters, rounded up."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


# -- chat and text completions ------------------------------------------------------


def _require_model(payload: Any) -> str:
    if not isinstance(payload, dict):
        raise WireError(400, "The request body must be a JSON object.")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise WireError(400, "you must provide a model parameter", param="model")
    return model


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise WireError(
        400, "Invalid message content: expected a string or a list of parts.", param="messages"
    )


def _stream_flags(payload: JsonObject) -> tuple[bool, bool]:
    stream = payload.get("stream") is True
    options = payload.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    return stream, include_usage


def _max_tokens(payload: JsonObject) -> int | None:
    value = payload.get("max_completion_tokens", payload.get("max_tokens"))
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise WireError(
            400, f"Invalid max_tokens: {value!r}; expected an integer >= 1.", param="max_tokens"
        )
    return value


def _reply(prompt: str, max_tokens: int | None) -> tuple[str, str]:
    text = REPLY_PREFIX + prompt[:REPLY_QUOTE_CHARS]
    if max_tokens is not None and estimate_tokens(text) > max_tokens:
        return text[: max_tokens * CHARS_PER_TOKEN], "length"
    return text, "stop"


def reply_pieces(text: str) -> list[str]:
    """A reply cut into stream deltas of a few words; they concatenate back to ``text``."""
    words = _WORDS.findall(text)
    return ["".join(words[i : i + WORDS_PER_CHUNK]) for i in range(0, len(words), WORDS_PER_CHUNK)]


def _usage(prompt_tokens: int, completion_tokens: int) -> JsonObject:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _chunks(head: JsonObject, choices: list[JsonObject], usage: JsonObject | None) -> list[Any]:
    """One stream chunk per choice, then (``stream_options.include_usage``) the usage chunk."""
    out = [dict(head, choices=[choice]) for choice in choices]
    if usage is not None:
        out.append(dict(head, choices=[], usage=usage))
    return out


def parse_chat(payload: Any) -> Prepared:
    """Validate a ``/v1/chat/completions`` body and prepare its answer."""
    model = _require_model(payload)
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise WireError(
            400, "'messages' must be a non-empty list of message objects.", param="messages"
        )
    texts = []
    last_user = None
    for message in messages:
        if type(message) is not dict or type(message.get("role")) is not str:
            raise WireError(400, "Each message must be an object with a 'role'.", param="messages")
        text = message.get("content")
        if type(text) is not str:
            text = _content_text(text)
        texts.append(text)
        if message["role"] == "user":
            last_user = text
    prompt = texts[-1] if last_user is None else last_user
    prompt_tokens = sum(estimate_tokens(t) for t in texts)
    reply, finish = _reply(prompt, _max_tokens(payload))
    stream, include_usage = _stream_flags(payload)
    completion_tokens = estimate_tokens(reply)
    usage = _usage(prompt_tokens, completion_tokens)

    def encode(rid: str, created: int) -> bytes:
        return (
            _CHAT_TEMPLATE
            % (
                rid,
                created,
                _quote(model),
                _quote(reply),
                finish,
                prompt_tokens,
                completion_tokens,
                prompt_tokens + completion_tokens,
            )
        ).encode()

    def body(rid: str, created: int) -> JsonObject:
        return {
            "id": "chatcmpl-" + rid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_simulator",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": usage,
        }

    def chunks(rid: str, created: int) -> list[Any]:
        head = {
            "id": "chatcmpl-" + rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_simulator",
        }
        deltas = [{"role": "assistant", "content": ""}] + [
            {"content": p} for p in reply_pieces(reply)
        ]
        choices: list[JsonObject] = [
            {"index": 0, "delta": d, "logprobs": None, "finish_reason": None} for d in deltas
        ]
        choices.append({"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish})
        return _chunks(head, choices, usage if include_usage else None)

    return Prepared(
        model=model,
        cost=usage["total_tokens"],
        body=body,
        stream=stream,
        chunks=chunks,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        encode=encode,
    )


def parse_completion(payload: Any) -> Prepared:
    """Validate a ``/v1/completions`` body and prepare its answer."""
    model = _require_model(payload)
    prompt = payload.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise WireError(400, "'prompt' must be a string or a list of strings.", param="prompt")
    prompt_tokens = estimate_tokens(prompt)
    reply, finish = _reply(prompt, _max_tokens(payload))
    stream, include_usage = _stream_flags(payload)
    completion_tokens = estimate_tokens(reply)
    usage = _usage(prompt_tokens, completion_tokens)

    def body(rid: str, created: int) -> JsonObject:
        return {
            "id": "cmpl-" + rid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"text": reply, "index": 0, "logprobs": None, "finish_reason": finish}],
            "usage": usage,
        }

    def chunks(rid: str, created: int) -> list[Any]:
        head = {
            "id": "cmpl-" + rid,
            "object": "text_completion",
            "created": created,
            "model": model,
        }
        choices = [
            {"text": p, "index": 0, "logprobs": None, "finish_reason": None}
            for p in reply_pieces(reply)
        ]
        choices.append({"text": "", "index": 0, "logprobs": None, "finish_reason": finish})
        return _chunks(head, choices, usage if include_usage else None)

    return Prepared(
        model=model,
        cost=usage["total_tokens"],
        body=body,
        stream=stream,
        chunks=chunks,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


# -- embeddings ---------------------------------------------------------------------


@functools.lru_cache(maxsize=EMBEDDING_CACHE_SIZE)
def _packed(text: str, dimensions: int) -> bytes:
    """The embedding as little-endian float32 bytes (cached: at most 16 KiB an entry)."""
    seed = text.encode("utf-8")
    raw: list[float] = []
    block = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(block.to_bytes(4, "little") + seed).digest()
        raw.extend((word >> 8) / 8388608.0 - 1.0 for word in struct.unpack("<8I", digest))
        block += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return struct.pack(f"<{dimensions}f", *(v / norm for v in raw))


def _floats(packed: bytes) -> list[Any]:
    return list(struct.unpack(f"<{len(packed) // 4}f", packed))


@functools.lru_cache(maxsize=EMBEDDING_CACHE_SIZE)
def _vector_json(text: str, dimensions: int, encoding: str) -> str:
    """One embedding as it appears in the JSON answer (cached, like ``_packed``)."""
    packed = _packed(text, dimensions)
    if encoding == "float":
        return _encode_json(_floats(packed))
    return '"' + base64.b64encode(packed).decode("ascii") + '"'


def embedding_for(text: str, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS) -> list[float]:
    """The simulator's embedding of ``text``: deterministic, unit length, float32 values.

    Component ``i`` comes from SHA-256 of ``(i // 8) as 4 little-endian bytes``
    followed by the UTF-8 text; each 32-bit word gives 24 bits mapped onto
    [-1, 1); the vector is then normalised and rounded to float32.
    """
    if not isinstance(dimensions, int) or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS:
        raise ValueError(
            f"dimensions must be an int in 1..{MAX_EMBEDDING_DIMENSIONS}, got {dimensions!r}"
        )
    return _floats(_packed(text, dimensions))


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise WireError(
            400, "'input' must be a string or a non-empty list of strings.", param="input"
        )
    if not all(isinstance(item, str) for item in value):
        raise WireError(
            400,
            "'input' must be strings: token arrays are not supported by the simulator.",
            param="input",
        )
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise WireError(
            400,
            f"'input' has {len(value)} items; at most {MAX_EMBEDDING_INPUTS} "
            "inputs are allowed per request.",
            param="input",
        )
    return value


def _dimensions(payload: JsonObject, default: int) -> int:
    value = payload.get("dimensions")
    if value is None:
        return default
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 1 <= value <= MAX_EMBEDDING_DIMENSIONS
    ):
        raise WireError(
            400,
            f"'dimensions' must be an integer in 1..{MAX_EMBEDDING_DIMENSIONS}.",
            param="dimensions",
        )
    return value


def parse_embeddings(
    payload: Any, default_dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS
) -> Prepared:
    """Validate a ``/v1/embeddings`` body and prepare its answer."""
    model = _require_model(payload)
    inputs = _embedding_inputs(payload.get("input"))
    dimensions = _dimensions(payload, default_dimensions)
    encoding = payload.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise WireError(
            400, "'encoding_format' must be 'float' or 'base64'.", param="encoding_format"
        )
    tokens = sum(estimate_tokens(text) for text in inputs)

    def vector(text: str) -> Any:
        packed = _packed(text, dimensions)
        if encoding == "float":
            return _floats(packed)
        return base64.b64encode(packed).decode("ascii")

    def body(rid: str, created: int) -> JsonObject:
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": vector(text)}
                for i, text in enumerate(inputs)
            ],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def encode(rid: str, created: int) -> bytes:
        data = ",".join(
            _EMBEDDING_ITEM % (i, _vector_json(text, dimensions, encoding))
            for i, text in enumerate(inputs)
        )
        return (_EMBEDDINGS_TEMPLATE % (data, _quote(model), tokens, tokens)).encode()

    return Prepared(
        model=model,
        cost=tokens,
        body=body,
        prompt_tokens=tokens,
        embedding_inputs=len(inputs),
        encode=encode,
    )


# -- models -------------------------------------------------------------------------


def model_object(model_id: str) -> JsonObject:
    owner = "openai" if model_id.startswith("text-embedding") else "system"
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": owner}


def models_list(models: tuple[str, ...]) -> JsonObject:
    return {"object": "list", "data": [model_object(m) for m in models]}


def model_not_found(model_id: str) -> WireError:
    return WireError(
        404,
        f"The model `{model_id}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )
