"""The Anthropic Messages API: ``POST /v1/messages``, ``GET /v1/models``,
``POST /v1/messages/count_tokens``, named-event SSE.

Requests
    ``x-api-key`` (not a bearer token) and ``anthropic-version`` on every
    request.  System prompts are a top-level ``system`` field, not messages;
    ``max_tokens`` is required (:data:`DEFAULT_MAX_TOKENS` when the caller
    gives none).  ``tools``, ``tool_choice`` and content blocks
    (``tool_result``, images, ...) pass through untouched.

Errors
    ``{"type": "error", "error": {"type": "overloaded_error", "message": ...},
    "request_id": ...}``; the status decides the class (529 -> overloaded),
    the error type refines it when the status alone would not (an
    ``overloaded_error`` sent as 500, an error event inside a 200 stream).
    A 429 whose ``error.details.error_code`` is the monthly spend limit is not
    retried: waiting will not lift it.

Rate limits
    ``retry-after`` (seconds) on 429, and on every response
    ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{remaining,reset}``
    with the resets as RFC 3339 timestamps.

Streams
    ``message_start`` (input tokens), ``content_block_start``,
    ``content_block_delta`` (``text_delta``, ``input_json_delta``, ...),
    ``content_block_stop``, ``message_delta`` (stop reason, output tokens),
    ``message_stop`` (the end marker), ``ping`` (dropped), ``error`` (raised as
    its typed error).  Every other event is handed over as sent.
    :meth:`AnthropicWire.stream_delta` reads each in common terms: text from
    ``text_delta`` (and a text block's opening text), tool-call pieces from
    a ``tool_use`` block's start (id, name) and its ``input_json_delta``
    pieces (indexed by content block), the stop reason and the usage;
    thinking, signatures and citations add nothing.

Anthropic has no embeddings and no text-completions operation for current
models: both are refused before anything is sent.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from collections.abc import Mapping
from typing import Any

from ..resilience.errors import ApiError, InvalidInputError, classify_status, get_header
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
    sse_event,
    token_count,
)

__all__ = [
    "ANTHROPIC",
    "ANTHROPIC_MESSAGES_PARAMS",
    "ANTHROPIC_VERSION",
    "AnthropicWire",
    "DEFAULT_MAX_TOKENS",
    "ERROR_TYPE_STATUS",
    "parse_rfc3339",
]

ANTHROPIC_VERSION = "2023-06-01"
"""The ``anthropic-version`` header: the API version this adapter speaks."""

DEFAULT_MAX_TOKENS = 1024
"""``max_tokens`` sent when the caller gives none (the API requires one)."""

ANTHROPIC_MESSAGES_PARAMS = frozenset(
    {
        "container",
        "context_management",
        "max_tokens",
        "mcp_servers",
        "metadata",
        "output_format",
        "service_tier",
        "stop_sequences",
        "system",
        "temperature",
        "thinking",
        "tool_choice",
        "tools",
        "top_k",
        "top_p",
    }
)
"""The body parameters of ``POST /v1/messages`` beside ``model``, ``messages`` and ``stream``."""

MESSAGES = "v1/messages"
COUNT_TOKENS = "v1/messages/count_tokens"
MODELS = "v1/models"
SPEND_LIMIT_CODE = "enforced_spend_limit_reached"

ANTHROPIC = ProviderSpec(
    name="anthropic",
    default_base_url="https://api.anthropic.com",
    key_metadata=("anthropic_api_key", "claude_api_key"),
    key_env=("ANTHROPIC_API_KEY",),
    base_url_metadata=(
        "anthropic_api_base",
        "claude_api_base",
        "anthropic_base_url",
        "base_url",
        "api_base",
    ),
    base_url_env=("ANTHROPIC_BASE_URL",),
    simulator_path="",
    default_chat_model="claude-sonnet-4-5",
    extra_headers={"anthropic-version": ANTHROPIC_VERSION},
)

ERROR_TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""Anthropic's ``error.type`` values and the status each is documented with."""

_FRACTION = re.compile(r"\.(\d+)")
CHAT_ROLES = ("user", "assistant")
SYSTEM_ROLE = "system"


class AnthropicWire(Wire):
    """Maps operations to the Anthropic Messages API and back."""

    path_prefixes = ("v1/",)  # "messages", "/v1/messages" and "v1/messages" are the same endpoint
    response_types = (dict,)
    body_params = {"chat": ANTHROPIC_MESSAGES_PARAMS}

    # ------------------------------------------------------------ requests

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"x-api-key": api_key} if api_key else {}

    def method_for(self, path: str, data: Any) -> str:
        """``GET`` for the models list and one model, ``POST`` otherwise."""
        if data is None and (path == MODELS or path.startswith(MODELS + "/")):
            return "GET"
        return "POST"

    # ----------------------------------------------------------- responses

    def parse_response(self, endpoint: str, response: HttpResponse) -> Any:
        result = super().parse_response(endpoint, response)
        if result.get("type") == "error":
            raise self.error_from_body(result, response.status, response.headers)
        return result

    def error_for(self, response: HttpResponse, *, wall_now: float, attempt: int) -> ApiError:
        """The typed error of a non-2xx answer: class from the status (or
        from ``error.type`` when the status says less), the provider's
        message, ``request-id``, and ``retry-after`` -- or, on a 429 without
        it, the reset time of the exhausted limit."""
        body = body_json(response.body)
        error = self.error_from_body(
            body, response.status, response.headers, wall_now=wall_now, attempt=attempt
        )
        if error.retry_after is None and response.status == 429:
            error.retry_after = exhausted_reset(response.headers, wall_now)
        return error

    def error_from_body(
        self,
        body: Any,
        status: int | None,
        headers: Mapping[str, str] | None = None,
        *,
        wall_now: float = 0.0,
        attempt: int | None = None,
    ) -> ApiError:
        """The typed error of an Anthropic error body sent with ``status``
        (None: an ``error`` event inside a stream, whose class then comes
        from ``error.type`` alone)."""
        err = body.get("error") if isinstance(body, dict) else None
        err_type = err.get("type") if isinstance(err, dict) else None
        typed_status = ERROR_TYPE_STATUS.get(err_type) if isinstance(err_type, str) else None
        http_error = status is not None and status >= 400
        if (
            status is None or not http_error
        ):  # an error event in a 200 stream, or an error body sent with 200
            class_status = typed_status or 500
        elif typed_status == 529 and status >= 500:  # overloaded, whatever 5xx carried it
            class_status = 529
        else:
            class_status = status
        request_id = get_header(headers, "request-id")
        if (
            request_id is None
            and isinstance(body, dict)
            and isinstance(body.get("request_id"), str)
        ):
            request_id = body["request_id"]
        error = classify_status(
            class_status,
            headers,
            body,
            wall_now=wall_now,
            provider=self.name,
            request_id=request_id,
            attempt=attempt,
        )
        error.status = status if http_error else None
        if error.should_retry is None and _spend_limit_reached(err):
            error.should_retry = False
            error.message += " (monthly spend limit reached: retrying will not help)"
        return error

    def rate_limit_hints(self, headers: Mapping[str, str]) -> dict[str, Any] | None:
        """``anthropic-ratelimit-*-remaining`` counts and ``-reset`` times.

        Resets are RFC 3339 timestamps; they become seconds from the
        response's own ``Date`` header (the server's clock, so no skew), and
        are left out when there is none.  ``tokens_remaining`` is the
        combined tokens header, else the tighter of input and output."""
        hints: dict[str, Any] = {}
        date = _http_date(get_header(headers, "date"))
        for kind, names in (
            ("requests", ("requests",)),
            ("tokens", ("tokens", "input-tokens", "output-tokens")),
        ):
            remaining = _first_int(
                headers, [f"anthropic-ratelimit-{n}-remaining" for n in names], kind == "tokens"
            )
            if remaining is not None:
                hints[f"{kind}_remaining"] = remaining
            reset = _first_reset(headers, names)
            if reset is not None and date is not None:
                hints[f"{kind}_reset"] = max(0.0, reset - date)
        return hints or None

    def reply_text(self, result: Any) -> str:
        """The text blocks of a message, joined."""
        blocks = result.get("content") if isinstance(result, dict) else None
        if not isinstance(blocks, list):
            return ""
        return "".join(
            b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"
        )

    def usage(self, result: Any) -> tuple[int, int]:
        """(input, output) tokens of a message, a ``message_start`` or a
        ``message_delta``.  Input counts cache reads and writes too: they are
        input the model processed (``input_tokens`` alone excludes them)."""
        if not isinstance(result, dict):
            return 0, 0
        usage = result.get("usage")
        if usage is None and isinstance(result.get("message"), dict):
            usage = result["message"].get("usage")
        if not isinstance(usage, dict):
            return 0, 0
        tokens_in = sum(
            token_count(usage.get(k))
            for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        return tokens_in, token_count(usage.get("output_tokens"))

    # ------------------------------------------------------------- streams

    def parse_stream_event(self, raw: Event) -> tuple[Any, bool]:
        event = sse_event(raw)
        data = event.data.strip()
        if not data:
            return None, False
        chunk = self.stream_json(data)
        kind = event.event or (chunk.get("type") if isinstance(chunk, dict) else None)
        if kind == "ping":
            return None, False
        if kind == "error":
            raise self.error_from_body(chunk, None)
        return chunk, kind == "message_stop"

    def stream_delta(self, chunk: Any) -> StreamDelta:
        """One event in common terms, by its ``type``:

        - ``message_start``: usage ``(input tokens, 0)`` (cache reads and
          writes counted as input; its ``output_tokens`` is a placeholder);
        - ``content_block_start``: a ``tool_use`` block opens a tool call
          (``index`` the block's, its ``id`` and ``name``, no arguments yet);
          a ``text`` block may open with text;
        - ``content_block_delta``: ``text_delta`` -> text,
          ``input_json_delta`` -> a piece of the block's arguments (the
          empty piece that often opens them adds nothing);
        - ``message_delta``: ``stop_reason`` as a finish reason, and the
          usage as reported (output tokens; input too where the API repeats
          the cumulative figures);
        - anything else: :data:`EMPTY_DELTA`."""
        kind = chunk.get("type") if isinstance(chunk, dict) else None
        read = _STREAM_READERS.get(kind) if isinstance(kind, str) else None
        return read(self, chunk) if read is not None else EMPTY_DELTA

    def _message_start_delta(self, chunk: dict[str, Any]) -> StreamDelta:
        message = chunk.get("message")
        usage = message.get("usage") if isinstance(message, dict) else None
        if not isinstance(usage, dict):
            return EMPTY_DELTA
        return StreamDelta(usage=(self.usage(message)[0], 0))

    def _block_start_delta(self, chunk: dict[str, Any]) -> StreamDelta:
        block, index = chunk.get("content_block"), _block_index(chunk)
        if not isinstance(block, dict):
            return EMPTY_DELTA
        kind = block.get("type")
        if kind == "tool_use" and index is not None:
            call = ToolCallDelta(
                index, _str_or_none(block.get("id")), _str_or_none(block.get("name")), ""
            )
            return StreamDelta(tool_calls=(call,))
        if kind == "text" and isinstance(block.get("text"), str) and block["text"]:
            return StreamDelta(text=block["text"])
        return EMPTY_DELTA

    def _block_delta(self, chunk: dict[str, Any]) -> StreamDelta:
        delta, index = chunk.get("delta"), _block_index(chunk)
        if not isinstance(delta, dict):
            return EMPTY_DELTA
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            return StreamDelta(text=delta["text"])
        piece = delta.get("partial_json") if kind == "input_json_delta" else None
        if isinstance(piece, str) and piece and index is not None:
            return StreamDelta(tool_calls=(ToolCallDelta(index, None, None, piece),))
        return EMPTY_DELTA  # thinking_delta, signature_delta, citations_delta, ...

    def _message_delta(self, chunk: dict[str, Any]) -> StreamDelta:
        delta = chunk.get("delta")
        reason = finish_reason(delta.get("stop_reason")) if isinstance(delta, dict) else None
        usage = self.usage(chunk) if isinstance(chunk.get("usage"), dict) else None
        return StreamDelta(finish_reason=reason, usage=usage)

    # ---------------------------------------------------------- operations

    def chat_request(
        self, model: str, messages: list[Any], params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        """``messages`` without its system messages, which become ``system``
        (after any ``system`` given in ``params``)."""
        params = dict(params)
        system_parts = [params.pop("system")] if params.get("system") is not None else []
        chat = []
        for i, message in enumerate(messages):
            role = message.get("role")
            if role == SYSTEM_ROLE:
                system_parts.append(_system_content(message.get("content"), i))
            elif role in CHAT_ROLES:
                chat.append(message)
            else:
                raise InvalidInputError(
                    f"messages[{i}] has role {role!r}: Anthropic takes 'user' and 'assistant' turns (and 'system', "
                    "moved to the system prompt); send tool results as tool_result blocks in a user message",
                    provider=self.name,
                )
        if not chat:
            raise InvalidInputError(
                "messages must hold at least one 'user' message besides system ones",
                provider=self.name,
            )
        data: dict[str, Any] = {"model": model, "messages": chat}
        if system_parts:
            data["system"] = join_system(system_parts)
        data["max_tokens"] = _max_tokens(params.pop("max_tokens", DEFAULT_MAX_TOKENS), self.name)
        data.update(params)
        if stream:
            data["stream"] = True
        return MESSAGES, data

    def count_tokens_request(
        self, model: str, messages: list[Any], params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """``POST /v1/messages/count_tokens``: the chat body without
        ``max_tokens`` and ``stream``, which that endpoint does not take."""
        _, data = self.chat_request(
            model, messages, dict(params, max_tokens=DEFAULT_MAX_TOKENS), False
        )
        del data["max_tokens"]
        return COUNT_TOKENS, data

    def embeddings_request(
        self, model: str, inputs: Any, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        raise InvalidInputError(
            f"the {self.name} backend has no embeddings operation: the Anthropic API offers none "
            "(its documentation points to Voyage AI for embeddings)",
            provider=self.name,
        )

    def models_request(self) -> tuple[str, dict[str, Any] | None]:
        return MODELS, None

    def model_request(self, model_id: str) -> tuple[str, dict[str, Any] | None]:
        return f"{MODELS}/{model_id}", None


_STREAM_READERS = {
    "message_start": AnthropicWire._message_start_delta,
    "content_block_start": AnthropicWire._block_start_delta,
    "content_block_delta": AnthropicWire._block_delta,
    "message_delta": AnthropicWire._message_delta,
}
"""Stream event type -> what reads it in common terms (others add nothing)."""


def _block_index(chunk: dict[str, Any]) -> int | None:
    index = chunk.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# ------------------------------------------------------------------ helpers


def join_system(parts: list[Any]) -> Any:
    """System prompts as one: strings joined by blank lines; if any part is
    a list of content blocks, the whole as blocks (strings become text blocks)."""
    if all(isinstance(p, str) for p in parts):
        return "\n\n".join(parts)
    blocks: list[Any] = []
    for part in parts:
        blocks.extend([{"type": "text", "text": part}] if isinstance(part, str) else part)
    return blocks


def _system_content(content: Any, index: int) -> Any:
    if isinstance(content, str) or (
        isinstance(content, list) and all(isinstance(b, Mapping) for b in content)
    ):
        return content
    raise InvalidInputError(
        f"messages[{index}] is a system message whose content is neither a string nor a list of content blocks"
    )


def _max_tokens(value: Any, provider: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(
            f"max_tokens must be a positive integer (the API requires it), not {value!r}",
            provider=provider,
        )
    return value


def _spend_limit_reached(err: Any) -> bool:
    details = err.get("details") if isinstance(err, dict) else None
    return isinstance(details, dict) and details.get("error_code") == SPEND_LIMIT_CODE


def _first_int(headers: Mapping[str, str], names: list[Any], tightest: bool) -> int | None:
    """The first header of ``names`` holding a count; with ``tightest`` and
    no first one, the smallest of the others."""
    values = []
    for name in names:
        raw = get_header(headers, name)
        if raw is not None and raw.strip().isdigit():
            if name == names[0]:
                return int(raw)
            values.append(int(raw))
    return min(values) if values and tightest else None


def _first_reset(headers: Mapping[str, str], names: tuple[Any, ...]) -> float | None:
    for name in names:
        reset = parse_rfc3339(get_header(headers, f"anthropic-ratelimit-{name}-reset"))
        if reset is not None:
            return reset
    return None


def parse_rfc3339(text: str | None) -> float | None:
    """An RFC 3339 timestamp (``2025-01-01T00:01:00Z``) as epoch seconds, or None."""
    if not text:
        return None
    raw = text.strip()
    if raw[-1:] in ("Z", "z"):
        raw = raw[:-1] + "+00:00"
    raw = _FRACTION.sub(
        lambda m: "." + (m.group(1) + "000000")[:6], raw
    )  # 3.10 takes 3 or 6 digits only
    try:
        when = datetime.datetime.fromisoformat(raw)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _http_date(text: str | None) -> float | None:
    if not text:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def exhausted_reset(headers: Mapping[str, str] | None, wall_now: float) -> float | None:
    """Seconds until the latest reset among the limits at 0 remaining, or None."""
    waits = []
    for name in ("requests", "tokens", "input-tokens", "output-tokens"):
        remaining = get_header(headers, f"anthropic-ratelimit-{name}-remaining")
        if remaining is None or remaining.strip() != "0":
            continue
        reset = parse_rfc3339(get_header(headers, f"anthropic-ratelimit-{name}-reset"))
        if reset is not None:
            waits.append(max(0.0, reset - wall_now))
    return max(waits) if waits else None
