"""Hugging Face text-generation-inference (TGI), at the simulator's root.

Routes::

    POST /generate          {"inputs": str, "parameters"?: {...}}
                            -> {"generated_text": str, "details"?: {...}}
    POST /generate_stream   SSE ``data:`` events {"index", "token", "generated_text": null,
                            "details": null}; the last one carries the whole
                            ``generated_text`` (and, with ``details``, the stream details).
                            No ``[DONE]``: a stream without that last event was cut.
    GET  /info              TGI's and TEI's fields in one document (see below)
    GET  /health            200, empty body

TGI's OpenAI-compatible ``/v1/chat/completions`` and ``/v1/completions`` are
the ``openai`` format's own routes, answered as OpenAI answers them.

``/info`` and ``/health`` are shared by TGI and TEI, which a real deployment
runs as two servers; this one simulated server plays both, so ``/info`` is
one merged document: TGI's fields (``max_input_tokens``, ``max_total_tokens``,
``max_best_of``, ...) and :func:`~.tei.tei_info`'s (``max_input_length``,
``max_batch_tokens``, ``model_type``, ...), ``model_id`` the first of
``scenario.models`` and ``max_client_batch_size`` TEI's 32 (the figure an
embeddings client batches by; TGI's own only concerns its legacy ``/``).

Replies are the shared deterministic ``"Simulated reply to: "`` + the first
60 characters of ``inputs`` (``inputs`` prepended with ``return_full_text``),
cut into word tokens; ``max_new_tokens`` (default 100) caps the tokens, the
finish reason is then ``"length"``, else ``"eos_token"``.  Validation as
TGI's (422, ``error_type`` ``"validation"``): empty ``inputs``, a
non-positive ``max_new_tokens``/``temperature``/``top_k``, ``top_p`` out of
(0, 1), more than 4 ``stop`` sequences, prompt plus new tokens over
``max_total_tokens``.  A 429 is TGI's ``"Model is overloaded"``.
"""

from __future__ import annotations

import re
from typing import Any

from ..openai_wire import REPLY_PREFIX, REPLY_QUOTE_CHARS, estimate_tokens
from ..wireformat import (
    SSE,
    JsonObject,
    Params,
    Prepared,
    Route,
    WireError,
    WireFormat,
    fixed_answer,
    simple_error_body,
)
from .tei import hf_auth_error, hf_overloaded, tei_info

__all__ = ["FORMAT", "info_document", "reply_tokens"]

DEFAULT_MAX_NEW_TOKENS = 100
MAX_INPUT_TOKENS = 1024
MAX_TOTAL_TOKENS = 2048
MAX_STOP_SEQUENCES = 4
VOCABULARY = 32000
TGI_VERSION = "3.0.0-simulated"
MALFORMED_BODY = b'{"generated_text": "cut sh'
_TOKENS = re.compile(r"\s*\S+")


def info_document(scenario: Any) -> JsonObject:
    """``GET /info``: TEI's fields, then TGI's over them (``max_client_batch_size`` stays TEI's)."""
    merged = tei_info(scenario)
    tei_cap = merged["max_client_batch_size"]
    merged.update(
        model_pipeline_tag="text-generation",
        max_best_of=2,
        max_stop_sequences=MAX_STOP_SEQUENCES,
        max_input_tokens=MAX_INPUT_TOKENS,
        max_total_tokens=MAX_TOTAL_TOKENS,
        validation_workers=2,
        router="text-generation-router",
        version=TGI_VERSION,
        max_client_batch_size=tei_cap,
    )
    return merged


def reply_tokens(prompt: str) -> list[str]:
    """The simulated model's whole answer to ``prompt``, token by token (they join back)."""
    return _TOKENS.findall(REPLY_PREFIX + prompt[:REPLY_QUOTE_CHARS])


def _token(text: str, special: bool = False) -> JsonObject:
    return {
        "id": sum(text.encode()) % VOCABULARY,
        "text": text,
        "logprob": -round(1.0 / (1 + len(text)), 4),
        "special": special,
    }


# -- validation -----------------------------------------------------------------------


def _invalid(message: str) -> WireError:
    return WireError(422, f"Input validation error: {message}", type="validation")


def _positive(parameters: JsonObject, name: str, kind: type) -> Any | None:
    value = parameters.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float) if kind is float else int)
        or value <= 0
    ):
        raise _invalid(f"`{name}` must be strictly positive")
    return value


def _parameters(payload: Any) -> tuple[str, JsonObject]:
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), str):
        raise WireError(
            422,
            "Failed to deserialize the JSON body into the target type: missing field `inputs`",
            type="validation",
        )
    inputs = payload["inputs"]
    if not inputs:
        raise _invalid("`inputs` cannot be empty")
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise WireError(
            422,
            "Failed to deserialize the JSON body into the target type: `parameters`",
            type="validation",
        )
    for name in ("max_new_tokens", "top_k"):
        _positive(parameters, name, int)
    for name in ("temperature", "repetition_penalty"):
        _positive(parameters, name, float)
    top_p = parameters.get("top_p")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0.0 < top_p < 1.0):
        raise _invalid("`top_p` must be > 0.0 and < 1.0")
    stop = parameters.get("stop") or []
    if not isinstance(stop, list) or len(stop) > MAX_STOP_SEQUENCES:
        raise _invalid(
            f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(stop) if isinstance(stop, list) else stop!r}"
        )
    input_tokens = estimate_tokens(inputs)
    if input_tokens > MAX_INPUT_TOKENS:
        raise _invalid(
            f"`inputs` must have less than {MAX_INPUT_TOKENS} tokens. Given: {input_tokens}"
        )
    new_tokens = parameters.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS
    if input_tokens + new_tokens > MAX_TOTAL_TOKENS:
        raise _invalid(
            f"`inputs` tokens + `max_new_tokens` must be <= {MAX_TOTAL_TOKENS}. "
            f"Given: {input_tokens} `inputs` tokens and {new_tokens} `max_new_tokens`"
        )
    return inputs, parameters


# -- answers --------------------------------------------------------------------------


def _generation(payload: Any) -> JsonObject:
    """What the simulated model answers: tokens, text, finish reason, lengths."""
    inputs, parameters = _parameters(payload)
    limit = parameters.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS
    whole = reply_tokens(inputs)
    tokens = whole[:limit]
    text = "".join(tokens)
    if parameters.get("return_full_text") is True:
        text = inputs + text
    return {
        "inputs": inputs,
        "tokens": tokens,
        "text": text,
        "finish_reason": "length" if len(tokens) < len(whole) else "eos_token",
        "input_length": estimate_tokens(inputs),
        "details": parameters.get("details") is True
        or parameters.get("decoder_input_details") is True,
        "prefill": parameters.get("decoder_input_details") is True,
        "seed": parameters.get("seed"),
    }


def _details(gen: JsonObject) -> JsonObject:
    prefill = (
        [dict(_token(t), logprob=None) for t in _TOKENS.findall(gen["inputs"])]
        if gen["prefill"]
        else []
    )
    return {
        "finish_reason": gen["finish_reason"],
        "generated_tokens": len(gen["tokens"]),
        "seed": gen["seed"],
        "prefill": prefill,
        "tokens": [_token(t) for t in gen["tokens"]],
    }


def _prepared(gen: JsonObject, body: Any, stream: bool, chunks: Any = None) -> Prepared:
    return Prepared(
        model=None,
        cost=gen["input_length"] + len(gen["tokens"]),
        body=body,
        stream=stream,
        chunks=chunks,
        prompt_tokens=gen["input_length"],
        completion_tokens=len(gen["tokens"]),
    )


def _generate(payload: Any, scenario: Any, params: Params) -> Prepared:
    gen = _generation(payload)

    def body(rid: str, created: int) -> JsonObject:
        answer: JsonObject = {"generated_text": gen["text"]}
        if gen["details"]:
            answer["details"] = _details(gen)
        return answer

    return _prepared(gen, body, stream=False)


def _generate_stream(payload: Any, scenario: Any, params: Params) -> Prepared:
    gen = _generation(payload)

    def chunks(rid: str, created: int) -> list[Any]:
        tokens = gen["tokens"] or [""]
        events = [
            {"index": i + 1, "token": _token(t), "generated_text": None, "details": None}
            for i, t in enumerate(tokens)
        ]
        last = events[-1]
        last["generated_text"] = gen["text"]
        if gen["details"]:
            last["details"] = {
                "finish_reason": gen["finish_reason"],
                "generated_tokens": len(gen["tokens"]),
                "seed": gen["seed"],
                "input_length": gen["input_length"],
            }
        return events

    def body(
        rid: str, created: int
    ) -> list[Any]:  # what a stream is when the script asks for a plain answer
        return chunks(rid, created)

    return _prepared(gen, body, stream=True, chunks=chunks)


def _info(payload: Any, scenario: Any, params: Params) -> Prepared:
    return fixed_answer(None, info_document(scenario))


def _health(payload: Any, scenario: Any, params: Params) -> Prepared:
    return fixed_answer(None, b"", content_type="text/plain")


FORMAT = WireFormat(
    name="tgi",
    routes=(
        Route("POST", "/generate", _generate),
        Route("POST", "/generate_stream", _generate_stream),
        Route("GET", "/info", _info),
        Route("GET", "/health", _health),
    ),
    error_body=simple_error_body,
    auth_error=hf_auth_error,
    rate_limit_error=hf_overloaded,
    framing=SSE,
    malformed_body=MALFORMED_BODY,
)
