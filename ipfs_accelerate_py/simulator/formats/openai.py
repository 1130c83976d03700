"""OpenAI's wire format under ``/v1``: chat, completions, embeddings, models.

The request/response mapping itself is :mod:`..openai_wire` (pure functions,
also used by other OpenAI-compatible formats); this module declares the
routes, OpenAI's error body ``{"error": {message, type, param, code}}``, its
401 messages (``Authorization: Bearer KEY``) and its ``x-ratelimit-*``
headers.  Streams are ``data: JSON`` lines ending with ``data: [DONE]``.
``GET /v1/models`` and ``GET /v1/models/{id}`` are Anthropic's paths too, so
on GET routes the key may also come in ``x-api-key`` (Anthropic's header;
Bearer first); chat, completions and embeddings read Bearer only.
"""

from __future__ import annotations

from typing import Any

from .. import openai_wire as wire
from ..ratelimit import format_duration
from ..wireformat import (
    SSE_WITH_DONE,
    JsonObject,
    Params,
    Prepared,
    RateState,
    Route,
    WireError,
    WireFormat,
    bearer_key,
)

__all__ = ["FORMAT", "error_body", "openai_key", "openai_rate_headers", "routes"]

MALFORMED_BODY = (
    b'{"id": "chatcmpl-malformed", "object": "chat.completion", '
    b'"choices": [{"index": 0, "message": {"role": "assistant", "content": "cut sh'
)


def error_body(exc: WireError) -> JsonObject:
    """OpenAI's ``{"error": {"message", "type", "param", "code"}}``."""
    return wire.error_body(exc.status, exc.message, param=exc.param, code=exc.code, type=exc.type)


def openai_key(request: Any) -> str | None:
    """The Bearer key; on a GET (the models listing, shared with Anthropic) else ``x-api-key``."""
    headers = request.headers
    key = bearer_key(headers.get("Authorization"))
    if key is None and request.method == "GET":
        key = headers.get("x-api-key") or None
    return key


def auth_error(key: str | None) -> WireError:
    if key is None:
        return WireError(
            401,
            "You didn't provide an API key. Provide it in the Authorization header (Bearer auth).",
        )
    return WireError(401, "Incorrect API key provided.", code="invalid_api_key")


def rate_limit_error(exceeded: str, retry_after: str) -> WireError:
    return WireError(
        429,
        f"Rate limit reached for {exceeded} (simulated). Please try again in {retry_after}s.",
        type=exceeded,
        code="rate_limit_exceeded",
    )


def openai_rate_headers(state: RateState) -> JsonObject:
    """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (reset as ``"1m0s"``)."""
    headers = {}
    for name, budget in (("requests", state.requests), ("tokens", state.tokens)):
        if budget is None:
            continue
        headers[f"x-ratelimit-limit-{name}"] = str(budget.limit)
        headers[f"x-ratelimit-remaining-{name}"] = str(budget.remaining)
        headers[f"x-ratelimit-reset-{name}"] = format_duration(budget.reset)
    return headers


def _chat(payload: Any, scenario: Any, params: Params) -> Prepared:
    return wire.parse_chat(payload)


def _completion(payload: Any, scenario: Any, params: Params) -> Prepared:
    return wire.parse_completion(payload)


def _embeddings(payload: Any, scenario: Any, params: Params) -> Prepared:
    return wire.parse_embeddings(payload, scenario.embedding_dimensions)


def _models(payload: Any, scenario: Any, params: Params) -> Prepared:
    listing = wire.models_list(scenario.models)
    return Prepared(model=None, cost=0, body=lambda rid, created: listing)


def _model(payload: Any, scenario: Any, params: Params) -> Prepared:
    model_id = params["model"]
    if model_id not in scenario.models:
        raise wire.model_not_found(model_id)
    found = wire.model_object(model_id)
    return Prepared(model=model_id, cost=0, body=lambda rid, created: found)


def routes(prefix: str = "/v1") -> tuple[Route, ...]:
    """The OpenAI routes under ``prefix`` (another format may serve them elsewhere, e.g. ``/v3``)."""
    return (
        Route("POST", prefix + "/chat/completions", _chat),
        Route("POST", prefix + "/completions", _completion),
        Route("POST", prefix + "/embeddings", _embeddings),
        Route("GET", prefix + "/models", _models),
        Route("GET", prefix + "/models/{model+}", _model),
    )


FORMAT = WireFormat(
    name="openai",
    routes=routes(),
    key=openai_key,
    error_body=error_body,
    auth_error=auth_error,
    rate_limit_error=rate_limit_error,
    model_not_found=wire.model_not_found,
    rate_headers=openai_rate_headers,
    framing=SSE_WITH_DONE,
    malformed_body=MALFORMED_BODY,
)
