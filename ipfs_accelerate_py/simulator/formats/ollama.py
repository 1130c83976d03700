"""Ollama's native API at the simulator's root: ``POST /api/chat``,
``POST /api/generate``, ``POST /api/embed``, ``GET /api/tags``,
``GET /api/version``.

As Ollama does, ``/api/chat`` and ``/api/generate`` stream unless the body
says ``"stream": false``.  A stream is NDJSON (``application/x-ndjson``):
one object per line, the reply in pieces of a few words
(``message.content`` for chat, ``response`` for generate, ``"done": false``),
then a last line with ``"done": true``, ``done_reason`` and the counts.
There is no other terminator: a stream cut by a fault lacks the ``done``
line.

Deterministic answers, like the OpenAI format's: the reply is ``"Simulated
reply to: "`` + the first 60 characters of the last user message (of the
prompt, for generate), cut to ``4 * options.num_predict`` characters with
``done_reason: "length"`` when longer, or before the first of
``options.stop`` it contains.  ``prompt_eval_count`` is ``estimate_tokens``
over the messages' contents (the prompt and ``system``), ``eval_count`` over
the reply; durations are made up from them (nanoseconds).  An empty
``messages`` list or prompt loads the model (``done_reason: "load"``).

``/api/embed``: ``input`` a string or a list of strings; each vector is
``embedding_for(text, dimensions)`` (``dimensions`` from the body, else the
scenario's), in input order; ``prompt_eval_count`` sums the inputs' tokens.
``/api/tags`` lists the scenario's models, tagged ``:latest`` when untagged.

Keys: none needed (``anonymous``); ``Authorization: Bearer KEY`` counts as
the key (ollama.com and proxies), and ``valid_keys`` refuses others with 401
``{"error": "unauthorized"}``.  Errors are ``{"error": "..."}``: 400 bad
body, 404 ``model "x" not found, try pulling it first`` (``strict_models``),
429 rate limited (Retry-After), 503 ``outage``; Ollama sends no rate-limit
headers.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from ..openai_wire import (
    CHARS_PER_TOKEN,
    MAX_EMBEDDING_DIMENSIONS,
    MAX_EMBEDDING_INPUTS,
    REPLY_PREFIX,
    REPLY_QUOTE_CHARS,
    embedding_for,
    estimate_tokens,
    reply_pieces,
)
from ..wireformat import (
    NDJSON,
    JsonObject,
    Params,
    Prepared,
    Route,
    WireError,
    WireFormat,
    fixed_answer,
    simple_error_body,
)

__all__ = ["FORMAT", "tagged"]

VERSION = "0.12.0-simulated"
ROLES = frozenset({"system", "user", "assistant", "tool"})
NS_PER_PROMPT_TOKEN = 100_000
NS_PER_REPLY_TOKEN = 1_000_000
LOAD_NS = 1_000_000
MODIFIED_AT = "2024-11-01T00:00:00Z"
MALFORMED_BODY = b'{"model": "llama3.2", "message": {"role": "assistant", "content": "cut sh'


def auth_error(key: str | None) -> WireError:
    return WireError(401, "unauthorized")


def rate_limit_error(exceeded: str, retry_after: str) -> WireError:
    return WireError(
        429, f"too many requests: simulated {exceeded} limit reached, retry after {retry_after}s"
    )


def model_not_found(model: str) -> WireError:
    return WireError(404, f'model "{model}" not found, try pulling it first')


# -- reading the request ------------------------------------------------------------


def _model(payload: Any) -> str:
    if not isinstance(payload, dict):
        raise WireError(400, "the request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise WireError(400, "model is required")
    return model


def _streams(payload: JsonObject) -> bool:
    """Ollama streams unless told ``"stream": false``."""
    value = payload.get("stream", True)
    if not isinstance(value, bool):
        raise WireError(400, f"invalid value for stream: {value!r}, expected true or false")
    return value


def _options(payload: JsonObject) -> tuple[int | None, list[str]]:
    """``(num_predict, stop sequences)`` of ``options``."""
    options = payload.get("options") or {}
    if not isinstance(options, dict):
        raise WireError(400, "options must be an object of model parameters")
    limit = options.get("num_predict")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
        raise WireError(400, f"option num_predict must be an integer, got {limit!r}")
    stop = options.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise WireError(400, "option stop must be a string or a list of strings")
    return (limit if limit is not None and limit > 0 else None), [s for s in stop if s]


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WireError(400, f"{where} must be a string")
    return value


def _reply(prompt: str, limit: int | None, stop: list[str]) -> tuple[str, str]:
    text = REPLY_PREFIX + prompt[:REPLY_QUOTE_CHARS]
    cuts = [text.find(s) for s in stop if s in text]
    if cuts:
        return text[: min(cuts)], "stop"
    if limit is not None and estimate_tokens(text) > limit:
        return text[: limit * CHARS_PER_TOKEN], "length"
    return text, "stop"


def _created_at(created: int) -> str:
    return datetime.datetime.fromtimestamp(created, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.000000Z"
    )


def _counts(prompt_tokens: int, reply_tokens: int) -> JsonObject:
    prompt_ns = prompt_tokens * NS_PER_PROMPT_TOKEN
    reply_ns = reply_tokens * NS_PER_REPLY_TOKEN
    return {
        "total_duration": LOAD_NS + prompt_ns + reply_ns,
        "load_duration": LOAD_NS,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": prompt_ns,
        "eval_count": reply_tokens,
        "eval_duration": reply_ns,
    }


# -- chat and generate --------------------------------------------------------------


def _answer(
    model: str, stream: bool, prompt_tokens: int, reply: str, reason: str, field: str
) -> Prepared:
    """The answer of chat (``field="message"``) or generate (``"response"``)."""
    reply_tokens = estimate_tokens(reply)

    def piece(text: str) -> Any:
        return {"role": "assistant", "content": text} if field == "message" else text

    def final(created: int, text: str) -> JsonObject:
        return {
            "model": model,
            "created_at": _created_at(created),
            field: piece(text),
            "done": True,
            "done_reason": reason,
            **(_counts(prompt_tokens, reply_tokens) if reason != "load" else {}),
        }

    def body(rid: str, created: int) -> JsonObject:
        return final(created, reply)

    def chunks(rid: str, created: int) -> list[Any]:
        if reason == "load":
            return [final(created, "")]
        stamp = _created_at(created)
        return [
            {"model": model, "created_at": stamp, field: piece(p), "done": False}
            for p in reply_pieces(reply)
        ] + [final(created, "")]

    return Prepared(
        model=model,
        cost=prompt_tokens + reply_tokens,
        body=body,
        stream=stream,
        chunks=chunks,
        prompt_tokens=prompt_tokens,
        completion_tokens=reply_tokens,
    )


def _chat(payload: Any, scenario: Any, params: Params) -> Prepared:
    model = _model(payload)
    messages = payload.get("messages") or []
    if not isinstance(messages, list):
        raise WireError(400, "messages must be a list of message objects")
    texts, last_user = [], None
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise WireError(
                400, f"messages[{i}]: a message needs a role: system, user, assistant or tool"
            )
        text = _text(message.get("content"), f"messages[{i}].content")
        texts.append(text)
        if message["role"] == "user":
            last_user = text
    stream = _streams(payload)
    limit, stop = _options(payload)
    if not messages:
        return _answer(model, stream, 0, "", "load", "message")
    reply, reason = _reply(texts[-1] if last_user is None else last_user, limit, stop)
    return _answer(model, stream, sum(estimate_tokens(t) for t in texts), reply, reason, "message")


def _generate(payload: Any, scenario: Any, params: Params) -> Prepared:
    model = _model(payload)
    prompt = _text(payload.get("prompt"), "prompt")
    system = _text(payload.get("system"), "system")
    stream = _streams(payload)
    limit, stop = _options(payload)
    if not prompt:
        return _answer(model, stream, 0, "", "load", "response")
    reply, reason = _reply(prompt, limit, stop)
    return _answer(
        model, stream, estimate_tokens(system) + estimate_tokens(prompt), reply, reason, "response"
    )


# -- embeddings ---------------------------------------------------------------------


def _inputs(value: Any) -> list[Any]:
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
        raise WireError(
            400, "invalid input type: input must be a string or a non-empty list of strings"
        )
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise WireError(
            400, f"too many inputs: {len(inputs)}, at most {MAX_EMBEDDING_INPUTS} per request"
        )
    return inputs


def _dimensions(payload: JsonObject, default: int) -> int:
    value = payload.get("dimensions")
    if value is None:
        return default
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 1 <= value <= MAX_EMBEDDING_DIMENSIONS
    ):
        raise WireError(400, f"dimensions must be an integer in 1..{MAX_EMBEDDING_DIMENSIONS}")
    return value


def _embed(payload: Any, scenario: Any, params: Params) -> Prepared:
    model = _model(payload)
    inputs = _inputs(payload.get("input"))
    dimensions = _dimensions(payload, scenario.embedding_dimensions)
    tokens = sum(estimate_tokens(text) for text in inputs)

    def body(rid: str, created: int) -> JsonObject:
        return {
            "model": model,
            "embeddings": [embedding_for(text, dimensions) for text in inputs],
            "total_duration": LOAD_NS + tokens * NS_PER_PROMPT_TOKEN,
            "load_duration": LOAD_NS,
            "prompt_eval_count": tokens,
        }

    return Prepared(
        model=model, cost=tokens, body=body, prompt_tokens=tokens, embedding_inputs=len(inputs)
    )


# -- models -------------------------------------------------------------------------


def tagged(name: str) -> str:
    """``"llama3.2"`` -> ``"llama3.2:latest"``; a tagged name is left as it is."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _model_entry(name: str) -> JsonObject:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {
        "name": name,
        "model": name,
        "modified_at": MODIFIED_AT,
        "size": 1_000_000 + int(digest[:6], 16),
        "digest": digest,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "simulated",
            "families": ["simulated"],
            "parameter_size": "1B",
            "quantization_level": "Q4_K_M",
        },
    }


def _tags(payload: Any, scenario: Any, params: Params) -> Prepared:
    return fixed_answer(None, {"models": [_model_entry(tagged(m)) for m in scenario.models]})


def _version(payload: Any, scenario: Any, params: Params) -> Prepared:
    return fixed_answer(None, {"version": VERSION})


FORMAT = WireFormat(
    name="ollama",
    routes=(
        Route("POST", "/api/chat", _chat),
        Route("POST", "/api/generate", _generate),
        Route("POST", "/api/embed", _embed),
        Route("GET", "/api/tags", _tags),
        Route("GET", "/api/version", _version),
    ),
    error_body=simple_error_body,  # {"error": "..."}
    auth_error=auth_error,
    rate_limit_error=rate_limit_error,
    model_not_found=model_not_found,
    overloaded_status=503,
    framing=NDJSON,
    malformed_body=MALFORMED_BODY,
)
