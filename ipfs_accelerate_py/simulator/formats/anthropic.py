"""The Anthropic Messages API at the simulator's root: ``POST /v1/messages``
(JSON or named-event SSE) and ``POST /v1/messages/count_tokens``.

Requests carry ``x-api-key`` (the key counters and ``valid_keys`` see) and
``anthropic-version`` (a request without it is refused with 400, as the API
does).  A body needs ``model``, ``max_tokens`` (an integer >= 1) and
``messages`` of ``user``/``assistant`` turns; a ``system`` role among them is
refused with the API's advice to use the top-level ``system`` field.

Deterministic answers, like the OpenAI format's: the reply is ``"Simulated
reply to: "`` + the first 60 characters of the last user turn's text (text
blocks and ``tool_result`` contents), cut to ``4 * max_tokens`` characters
with ``stop_reason: "max_tokens"`` when longer, or at the first of
``stop_sequences`` it contains (``"stop_sequence"``).  ``input_tokens`` is
``estimate_tokens`` over the system prompt and every turn's text,
``output_tokens`` over the reply.  A ``tool_choice`` of ``{"type": "tool",
"name"}`` or ``{"type": "any"}`` (with ``tools``) answers one ``tool_use``
block instead, its ``input`` filling each string property of the tool's
``input_schema`` with the quoted prompt, ``stop_reason: "tool_use"``.

Streams: ``message_start`` (input tokens), ``content_block_start``, ``ping``,
``content_block_delta`` (``text_delta`` pieces, or ``input_json_delta`` pieces
of the tool input), ``content_block_stop``, ``message_delta`` (stop reason and
the cumulative usage, input and output, as the current API sends it),
``message_stop``.  No terminator beyond ``message_stop``: a
stream cut by a fault lacks it.

Errors: ``{"type": "error", "error": {"type", "message"}}`` with Anthropic's
types by status (529 ``overloaded_error``, which the ``outage`` fault
answers); 401 ``authentication_error``; 429 ``rate_limit_error`` with
``retry-after``.  With rate limits configured every answer to the key carries
``anthropic-ratelimit-{requests,tokens,input-tokens}-{limit,remaining,reset}``,
resets as RFC 3339 timestamps.

``GET /v1/models`` is the OpenAI format's route (one path, one format): an
Anthropic client listing models gets that listing.
"""

from __future__ import annotations

import json
from typing import Any

from ..openai_wire import (
    CHARS_PER_TOKEN,
    REPLY_PREFIX,
    REPLY_QUOTE_CHARS,
    estimate_tokens,
    reply_pieces,
)
from ..wireformat import (
    NAMED_SSE,
    JsonObject,
    Params,
    Prepared,
    RateState,
    Route,
    WireError,
    WireFormat,
    fixed_answer,
    header_key,
    rfc3339_after,
)

__all__ = ["FORMAT", "anthropic_rate_headers", "error_body", "error_type_for"]

VERSION_HEADER = "anthropic-version"
ROLES = ("user", "assistant")
JSON_PIECE_CHARS = 12
MALFORMED_BODY = (
    b'{"id": "msg_malformed", "type": "message", "content": [{"type": "text", "text": "cut sh'
)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
KNOWN_TYPES = frozenset(ERROR_TYPES.values())


def error_type_for(status: int) -> str:
    """Anthropic's ``error.type`` for an HTTP status."""
    found = ERROR_TYPES.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(exc: WireError) -> JsonObject:
    """``{"type": "error", "error": {"type", "message"}}``; a type the
    framework gave that Anthropic does not use is replaced by the status's."""
    kind = exc.type if exc.type in KNOWN_TYPES else error_type_for(exc.status)
    return {"type": "error", "error": {"type": kind, "message": exc.message}}


def auth_error(key: str | None) -> WireError:
    if key is None:
        return WireError(401, "x-api-key header is required", type="authentication_error")
    return WireError(401, "invalid x-api-key", type="authentication_error")


def rate_limit_error(exceeded: str, retry_after: str) -> WireError:
    what = "requests" if exceeded == "requests" else "input tokens"
    return WireError(
        429,
        f"Number of {what} has exceeded your per-minute rate limit (simulated); "
        f"retry after {retry_after}s",
        type="rate_limit_error",
    )


def model_not_found(model: str) -> WireError:
    return WireError(404, f"model: {model}", type="not_found_error")


def anthropic_rate_headers(state: RateState) -> JsonObject:
    """``anthropic-ratelimit-*-{limit,remaining,reset}``; the token budget is
    reported as both ``tokens`` and ``input-tokens`` (the simulator keeps one)."""
    headers = {}
    for names, budget in (
        (("requests",), state.requests),
        (("tokens", "input-tokens"), state.tokens),
    ):
        if budget is None:
            continue
        for name in names:
            headers[f"anthropic-ratelimit-{name}-limit"] = str(budget.limit)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(budget.remaining)
            headers[f"anthropic-ratelimit-{name}-reset"] = rfc3339_after(budget.reset)
    return headers


# -- reading the request ------------------------------------------------------------


def _text_of(content: Any, where: str) -> str:
    """The text of a content: a string, or text blocks and tool results' text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise WireError(400, f"{where}: Input should be a valid string or list of content blocks")
    parts = []
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise WireError(400, f"{where}.{i}: each content block must be an object with a 'type'")
        if block["type"] == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif block["type"] == "tool_result":
            parts.append(_text_of(block.get("content", ""), f"{where}.{i}.content"))
    return "".join(parts)


def _checked(
    payload: Any, params: Params, *, needs_max_tokens: bool
) -> tuple[str, list[str], str, str]:
    """``(model, turns' texts, system text, last user text)`` of a valid body."""
    if not params.headers.get(VERSION_HEADER):
        raise WireError(400, f"{VERSION_HEADER}: header is required")
    if not isinstance(payload, dict):
        raise WireError(400, "The request body must be a JSON object.")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise WireError(400, "model: Field required")
    if needs_max_tokens:
        value = payload.get("max_tokens")
        if value is None:
            raise WireError(400, "max_tokens: Field required")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise WireError(400, f"max_tokens: Input should be an integer >= 1, got {value!r}")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise WireError(400, "messages: at least one message is required")
    texts: list[str] = []
    last_user: str | None = None
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise WireError(
                400,
                f"messages.{i}: Unexpected role {role!r}. The Messages API accepts a top-level "
                '`system` parameter, not "system" as an input message role.',
            )
        text = _text_of(message.get("content"), f"messages.{i}.content")
        texts.append(text)
        if role == "user":
            last_user = text
    system = payload.get("system")
    system_text = "" if system is None else _text_of(system, "system")
    return model, texts, system_text, texts[-1] if last_user is None else last_user


def _forced_tool(payload: JsonObject) -> JsonObject | None:
    """The tool a ``tool_choice`` forces, or None."""
    choice, tools = payload.get("tool_choice"), payload.get("tools")
    if not isinstance(choice, dict) or not isinstance(tools, list) or not tools:
        return None
    if choice.get("type") == "any":
        return tools[0] if isinstance(tools[0], dict) else None
    if choice.get("type") == "tool":
        found = [t for t in tools if isinstance(t, dict) and t.get("name") == choice.get("name")]
        if not found:
            raise WireError(400, f"tool_choice: tool {choice.get('name')!r} is not in tools")
        return found[0]
    return None


def _reply(prompt: str, payload: JsonObject) -> tuple[str, str, str | None]:
    """``(text, stop_reason, stop_sequence)``."""
    text = REPLY_PREFIX + prompt[:REPLY_QUOTE_CHARS]
    stops = payload.get("stop_sequences") or []
    hits = [(text.index(s), s) for s in stops if isinstance(s, str) and s and s in text]
    if hits:
        at, sequence = min(hits)
        return text[:at], "stop_sequence", sequence
    max_tokens = payload["max_tokens"]
    if estimate_tokens(text) > max_tokens:
        return text[: max_tokens * CHARS_PER_TOKEN], "max_tokens", None
    return text, "end_turn", None


def _tool_input(tool: JsonObject, prompt: str) -> JsonObject:
    schema = tool.get("input_schema")
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return {}
    quoted = prompt[:REPLY_QUOTE_CHARS]
    return {
        name: quoted
        for name, spec in props.items()
        if isinstance(spec, dict) and spec.get("type") == "string"
    }


# -- answers ------------------------------------------------------------------------


def _stream_events(message: JsonObject) -> list[Any]:
    usage = message["usage"]
    start = dict(
        message,
        content=[],
        stop_reason=None,
        stop_sequence=None,
        usage=dict(usage, output_tokens=1),
    )
    events: list[Any] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening: JsonObject = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in reply_pieces(block["text"])]
        else:
            opening = dict(block, input={})
            raw = json.dumps(block["input"])
            deltas = [
                {"type": "input_json_delta", "partial_json": raw[i : i + JSON_PIECE_CHARS]}
                for i in range(0, len(raw), JSON_PIECE_CHARS)
            ]
        events.append({"type": "content_block_start", "index": index, "content_block": opening})
        if index == 0:
            events.append({"type": "ping"})
        events.extend({"type": "content_block_delta", "index": index, "delta": d} for d in deltas)
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": message["stop_reason"],
                "stop_sequence": message["stop_sequence"],
            },
            "usage": usage,
        }
    )
    events.append({"type": "message_stop"})
    return events


def _messages(payload: Any, scenario: Any, params: Params) -> Prepared:
    model, texts, system_text, prompt = _checked(payload, params, needs_max_tokens=True)
    input_tokens = estimate_tokens(system_text) + sum(estimate_tokens(t) for t in texts)
    tool = _forced_tool(payload)
    if tool is not None:
        tool_input = _tool_input(tool, prompt)
        reply, stop_reason, stop_sequence = json.dumps(tool_input), "tool_use", None
    else:
        reply, stop_reason, stop_sequence = _reply(prompt, payload)
    output_tokens = estimate_tokens(reply)

    def body(rid: str, created: int) -> JsonObject:
        if tool is not None:
            content = [
                {
                    "type": "tool_use",
                    "id": "toolu_" + rid,
                    "name": tool.get("name"),
                    "input": tool_input,
                }
            ]
        else:
            content = [{"type": "text", "text": reply}]
        return {
            "id": "msg_" + rid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": output_tokens,
            },
        }

    return Prepared(
        model=model,
        cost=input_tokens + output_tokens,
        body=body,
        stream=payload.get("stream") is True,
        chunks=lambda rid, created: _stream_events(body(rid, created)),
        prompt_tokens=input_tokens,
        completion_tokens=output_tokens,
    )


def _count_tokens(payload: Any, scenario: Any, params: Params) -> Prepared:
    model, texts, system_text, _ = _checked(payload, params, needs_max_tokens=False)
    return fixed_answer(
        model,
        {"input_tokens": estimate_tokens(system_text) + sum(estimate_tokens(t) for t in texts)},
    )


FORMAT = WireFormat(
    name="anthropic",
    routes=(
        Route("POST", "/v1/messages", _messages),
        Route("POST", "/v1/messages/count_tokens", _count_tokens),
    ),
    key=header_key("x-api-key"),
    error_body=error_body,
    auth_error=auth_error,
    rate_limit_error=rate_limit_error,
    model_not_found=model_not_found,
    rate_headers=anthropic_rate_headers,
    overloaded_status=529,
    framing=NAMED_SSE,
    malformed_body=MALFORMED_BODY,
)
