"""Hugging Face text-embeddings-inference (TEI), at the simulator's root.

Routes::

    POST /embed    {"inputs": str | [str], "normalize"?, "truncate"?, ...}
                   -> a bare JSON list of vectors, one per input, in input order
    POST /rerank   {"query": str, "texts": [str], "raw_scores"?, "return_text"?}
                   -> [{"index", "score", "text"?}, ...], best first

``GET /info`` and ``GET /health`` are TGI's and TEI's both: the ``tgi``
format serves them, its ``/info`` carrying :func:`tei_info`'s fields as well
(one simulated server plays both).

As the real server: more than :data:`MAX_CLIENT_BATCH_SIZE` inputs (or
texts) is a 413 ``{"error": "batch size 40 > maximum allowed batch size 32",
"error_type": "validation"}``; an empty list a 400 (``"empty"``); a body
that is not TEI's a 422 (``"tokenizer"``).  Vectors are the shared
:func:`~..openai_wire.embedding_for` of each text, ``scenario.embedding_dimensions``
long (token-id inputs are embedded as their JSON text); they are unit length
whatever ``normalize`` says.  Rerank scores are deterministic: ``(1 + cos)/2``
of the two texts' vectors, or ``cos`` itself with ``raw_scores``.  Errors
are ``{"error", "error_type"}``; a 429 says ``"Model is overloaded"``.
"""

from __future__ import annotations

import json
from typing import Any

from ..openai_wire import embedding_for, estimate_tokens
from ..wireformat import (
    SSE,
    JsonObject,
    Params,
    Prepared,
    Route,
    WireError,
    WireFormat,
    simple_error_body,
)

__all__ = [
    "FORMAT",
    "MAX_CLIENT_BATCH_SIZE",
    "hf_auth_error",
    "hf_overloaded",
    "rerank_score",
    "tei_info",
]

MAX_CLIENT_BATCH_SIZE = 32
MAX_INPUT_LENGTH = 512
MAX_BATCH_TOKENS = 16384
TEI_VERSION = "1.6.0-simulated"
MALFORMED_BODY = b"[[0.0123, -0.0456, 0.07"


def hf_auth_error(key: str | None) -> WireError:
    """401 as Hugging Face Inference Endpoints answer it."""
    if key is None:
        return WireError(401, "Authorization header is missing or has no bearer token")
    return WireError(401, "Invalid credentials in Authorization header")


def hf_overloaded(exceeded: str, retry_after: str) -> WireError:
    """TGI's and TEI's 429: their router's queue is full."""
    return WireError(429, "Model is overloaded", type="overloaded")


def tei_info(scenario: Any) -> JsonObject:
    """TEI's ``/info`` fields; the model is the first of ``scenario.models``."""
    return {
        "model_id": _served_model(scenario),
        "model_sha": None,
        "model_dtype": "float32",
        "model_type": {"embedding": {"pooling": "mean"}},
        "max_concurrent_requests": 512,
        "max_input_length": MAX_INPUT_LENGTH,
        "max_batch_tokens": MAX_BATCH_TOKENS,
        "max_batch_requests": None,
        "max_client_batch_size": MAX_CLIENT_BATCH_SIZE,
        "auto_truncate": False,
        "tokenization_workers": 2,
        "version": TEI_VERSION,
        "sha": None,
        "docker_label": None,
    }


def _served_model(scenario: Any) -> str:
    models = tuple(getattr(scenario, "models", ()) or ())
    return models[0] if models else "simulated-model"


def rerank_score(query: str, text: str, dimensions: int, raw: bool = False) -> float:
    """The simulated relevance of ``text`` to ``query`` (see the module docstring)."""
    cosine = sum(
        a * b
        for a, b in zip(
            embedding_for(query, dimensions), embedding_for(text, dimensions), strict=False
        )
    )
    return cosine if raw else (1.0 + cosine) / 2.0


# -- requests -------------------------------------------------------------------------


def _body(payload: Any) -> JsonObject:
    if not isinstance(payload, dict):
        raise WireError(
            422, "Failed to deserialize the JSON body into the target type", type="tokenizer"
        )
    return payload


def _check_count(count: int, what: str) -> None:
    if count == 0:
        raise WireError(400, f"`{what}` cannot be empty", type="empty")
    if count > MAX_CLIENT_BATCH_SIZE:
        raise WireError(
            413,
            f"batch size {count} > maximum allowed batch size {MAX_CLIENT_BATCH_SIZE}",
            type="validation",
        )


def _as_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if (
        isinstance(item, list)
        and item
        and all(isinstance(t, int) and not isinstance(t, bool) for t in item)
    ):
        return json.dumps(item)  # token ids: embedded by their text, deterministically
    raise WireError(
        422, "`inputs` must be a string, a list of strings or token ids", type="tokenizer"
    )


def _inputs(value: Any) -> list[Any]:
    if isinstance(value, str) or (
        isinstance(value, list) and value and all(type(t) is int for t in value)
    ):
        return [_as_text(value)]
    if not isinstance(value, list):
        raise WireError(
            422, "`inputs` must be a string, a list of strings or token ids", type="tokenizer"
        )
    _check_count(len(value), "inputs")
    return [_as_text(item) for item in value]


def _embed(payload: Any, scenario: Any, params: Params) -> Prepared:
    texts = _inputs(_body(payload).get("inputs"))
    dimensions = scenario.embedding_dimensions
    tokens = sum(estimate_tokens(t) for t in texts)
    return Prepared(
        model=None,
        cost=tokens,
        body=lambda rid, created: [embedding_for(t, dimensions) for t in texts],
        prompt_tokens=tokens,
        embedding_inputs=len(texts),
    )


def _rerank(payload: Any, scenario: Any, params: Params) -> Prepared:
    body = _body(payload)
    query, texts = body.get("query"), body.get("texts")
    if (
        not isinstance(query, str)
        or not isinstance(texts, list)
        or not all(isinstance(t, str) for t in texts)
    ):
        raise WireError(
            422, "`query` must be a string and `texts` a list of strings", type="tokenizer"
        )
    _check_count(len(texts), "texts")
    raw, with_text = body.get("raw_scores") is True, body.get("return_text") is True
    dimensions = scenario.embedding_dimensions

    def ranks(rid: str, created: int) -> list[Any]:
        out = []
        for index, text in enumerate(texts):
            rank = {"index": index, "score": rerank_score(query, text, dimensions, raw)}
            if with_text:
                rank["text"] = text
            out.append(rank)
        return sorted(out, key=lambda r: (-r["score"], r["index"]))

    tokens = estimate_tokens(query) * len(texts) + sum(estimate_tokens(t) for t in texts)
    return Prepared(model=None, cost=tokens, body=ranks, prompt_tokens=tokens)


FORMAT = WireFormat(
    name="tei",
    routes=(Route("POST", "/embed", _embed), Route("POST", "/rerank", _rerank)),
    error_body=simple_error_body,
    auth_error=hf_auth_error,
    rate_limit_error=hf_overloaded,
    framing=SSE,
    malformed_body=MALFORMED_BODY,
)
